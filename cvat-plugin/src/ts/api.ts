// The runs API of the MomentSeg companion, served under CVAT's own origin at /momentseg/:
// the shapes it speaks and the requests the plugin sends (pure: no fetch here).

export const API_ROOT = '/momentseg/api';

// A POST without this header is refused by the companion: a cross-site form cannot set it.
export const CSRF_GUARD_HEADER = { 'X-Requested-With': 'momentseg' };

export type RunState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
export type Output = 'mask' | 'polygon';

export interface Moment {
    start: number;
    end: number;
    start_s: number;
    end_s: number;
}

export interface RunResult {
    object: number;
    frames_written: number;
    output: Output;
    fps: number;
    moment: Moment | null;
    keyframes: number[];
    center: number | null;
}

export interface Run {
    id: string;
    kind: 'annotate' | 'refine';
    task: number;
    job: number | null;
    prompt: string;
    label: string;
    user: string;
    state: RunState;
    stage: string | null;
    percent: number;
    position: number | null;
    worker: string | null;
    created: string;
    updated: string;
    result: RunResult | null;
    error: string | null;
}

export interface OptionDeclaration {
    name: string;
    type: string;
    default: unknown;
    choices?: unknown[];
    minimum?: number;
    maximum?: number;
    help: string;
    symbol?: string;
}

export interface About {
    version: string;
    options: OptionDeclaration[];
    limits: { max_frames: number; max_prompt_chars: number };
}

export interface FrameSpan {
    start: number;
    stop: number; // exclusive
}

export type OptionValues = Record<string, unknown>;

export interface AnnotateBody {
    kind: 'annotate';
    task: number;
    job: number | null;
    frames: FrameSpan | null;
    prompt: string;
    label: string;
    output: Output;
    create_moment_label: boolean;
    options: OptionValues;
}

export interface RefineBody {
    kind: 'refine';
    task: number;
    object: number;
    prompt: string | null;
    options: OptionValues;
}

export interface ApiRequest {
    url: string;
    init: RequestInit;
}

/** The value of one cookie in `document.cookie`'s format, or null. */
export function readCookie(cookies: string, name: string): string | null {
    for (const part of cookies.split(';')) {
        const [key, ...value] = part.trim().split('=');
        if (key === name) return decodeURIComponent(value.join('='));
    }
    return null;
}

/**
 * A request to the companion. The browser's own CVAT session cookie goes along (same origin), and
 * CVAT's CSRF token is echoed so the companion can forward the person's session to CVAT as is.
 */
export function apiRequest(method: 'GET' | 'POST', path: string, cookies: string, body?: object): ApiRequest {
    const headers: Record<string, string> = { Accept: 'application/json' };
    const csrfToken = readCookie(cookies, 'csrftoken');
    if (csrfToken) headers['X-CSRFToken'] = csrfToken;
    if (method === 'POST') {
        Object.assign(headers, CSRF_GUARD_HEADER, { 'Content-Type': 'application/json' });
    }
    return {
        url: `${API_ROOT}${path}`,
        init: {
            method,
            headers,
            credentials: 'same-origin',
            ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        },
    };
}

export const aboutRequest = (cookies: string): ApiRequest => apiRequest('GET', '/about', cookies);

export const runsRequest = (task: number, cookies: string): ApiRequest => (
    apiRequest('GET', `/runs?task=${encodeURIComponent(String(task))}`, cookies));

export const runRequest = (id: string, cookies: string): ApiRequest => (
    apiRequest('GET', `/runs/${encodeURIComponent(id)}`, cookies));

export const startRequest = (body: AnnotateBody | RefineBody, cookies: string): ApiRequest => (
    apiRequest('POST', '/runs', cookies, body));

export const cancelRequest = (id: string, cookies: string): ApiRequest => (
    apiRequest('POST', `/runs/${encodeURIComponent(id)}/cancel`, cookies, {}));

const STATUS_WORDS: Record<number, string> = {
    401: 'You are not logged in to CVAT. Log in again and retry.',
    403: 'You may not edit this task, so MomentSeg cannot annotate it for you.',
    404: 'MomentSeg does not know this task or run.',
    413: 'The request is too large for MomentSeg.',
    429: 'Too many MomentSeg runs are waiting. Try again when some have finished.',
    502: 'MomentSeg cannot reach CVAT right now. Try again in a minute.',
    503: 'MomentSeg is not available right now. Try again in a minute.',
    504: 'MomentSeg did not answer in time. Try again in a minute.',
};

/**
 * What to tell the person when the companion answers with an error: its own plain `message` when it
 * sent one, else words for the status (a proxy's HTML error page is never shown).
 */
export function errorText(status: number, body: unknown): string {
    if (body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string') {
        const { message } = body as { message: string };
        if (message.trim()) return message;
    }
    if (status in STATUS_WORDS) return STATUS_WORDS[status];
    if (status === 404 || status === 0) return STATUS_WORDS[404];
    return `MomentSeg answered with an error (HTTP ${status}).`;
}
