import { describe, expect, it } from 'vitest';
import {
    cancelRequest, errorText, readCookie, runsRequest, startRequest,
} from '../src/ts/api';

describe('requests to the companion', () => {
    it('reads one cookie among several, decoded', () => {
        expect(readCookie('sessionid=abc; csrftoken=x%3Dy; theme=dark', 'csrftoken')).toBe('x=y');
        expect(readCookie('sessionid=abc', 'csrftoken')).toBeNull();
    });

    it('a GET carries the CSRF token and the same-origin session, and no body', () => {
        const { url, init } = runsRequest(7, 'csrftoken=tok');
        expect(url).toBe('/momentseg/api/runs?task=7');
        expect(init.method).toBe('GET');
        expect(init.credentials).toBe('same-origin');
        expect(init.body).toBeUndefined();
        expect((init.headers as Record<string, string>)['X-CSRFToken']).toBe('tok');
        expect((init.headers as Record<string, string>)['X-Requested-With']).toBeUndefined();
    });

    it('a POST carries the CSRF guard header and a JSON body', () => {
        const body = {
            kind: 'refine' as const, task: 7, object: 3, prompt: null, options: {},
        };
        const { url, init } = startRequest(body, '');
        const headers = init.headers as Record<string, string>;
        expect(url).toBe('/momentseg/api/runs');
        expect(headers['X-Requested-With']).toBe('momentseg');
        expect(headers['Content-Type']).toBe('application/json');
        expect(headers['X-CSRFToken']).toBeUndefined();
        expect(JSON.parse(init.body as string)).toEqual(body);
    });

    it('run ids are escaped in paths', () => {
        expect(cancelRequest('a/b', '').url).toBe('/momentseg/api/runs/a%2Fb/cancel');
    });
});

describe('error words', () => {
    it('prefers the service\'s own message', () => {
        expect(errorText(403, { error: 'forbidden', message: 'You may not edit task 7.' })).toBe('You may not edit task 7.');
    });

    it('falls back to words for the status, never to an HTML page', () => {
        expect(errorText(403, '<html>Forbidden</html>')).toMatch(/may not edit this task/);
        expect(errorText(401, null)).toMatch(/not logged in/);
        expect(errorText(429, { message: '  ' })).toMatch(/Too many/);
        expect(errorText(418, null)).toBe('MomentSeg answered with an error (HTTP 418).');
    });
});
