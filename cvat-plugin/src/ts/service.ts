// Calls to the companion from the browser: every call has a timeout, and every failure becomes one
// sentence the person can read.

import {
    aboutRequest, cancelRequest, errorText, runRequest, runsRequest, startRequest,
    type About, type AnnotateBody, type ApiRequest, type RefineBody, type Run,
} from './api';

export const REQUEST_TIMEOUT_MS = 20000;

export class ServiceError extends Error {
    constructor(message: string, readonly status: number) {
        super(message);
        this.name = 'ServiceError';
    }
}

async function send<T>({ url, init }: ApiRequest): Promise<T> {
    const controller = new AbortController();
    const timer = window.setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response: Response;
    try {
        response = await fetch(url, { ...init, signal: controller.signal });
    } catch (error) {
        const timedOut = (error as Error).name === 'AbortError';
        throw new ServiceError(timedOut ? errorText(504, null) : 'MomentSeg cannot be reached from this page.', 0);
    } finally {
        window.clearTimeout(timer);
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ServiceError(errorText(response.status, body), response.status);
    return body as T;
}

const cookies = (): string => document.cookie;

export const getAbout = (): Promise<About> => send(aboutRequest(cookies()));
export const listRuns = async (task: number): Promise<Run[]> => (
    (await send<{ runs: Run[] }>(runsRequest(task, cookies()))).runs);
export const getRun = (id: string): Promise<Run> => send(runRequest(id, cookies()));
export const startRun = (body: AnnotateBody | RefineBody): Promise<Run> => send(startRequest(body, cookies()));
export const cancelRun = (id: string): Promise<Run> => send(cancelRequest(id, cookies()));
