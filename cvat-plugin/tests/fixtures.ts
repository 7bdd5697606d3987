import type { Run } from '../src/ts/api';

export function run(overrides: Partial<Run> = {}): Run {
    return {
        id: 'r1',
        kind: 'annotate',
        task: 7,
        job: 12,
        prompt: 'the dog jumping',
        label: 'dog',
        user: 'anna',
        state: 'queued',
        stage: null,
        percent: 0,
        position: null,
        worker: null,
        created: '2026-12-07T05:00:00Z',
        updated: '2026-12-07T05:00:00Z',
        result: null,
        error: null,
        ...overrides,
    };
}

export const doneResult = {
    object: 4021,
    frames_written: 90,
    output: 'mask' as const,
    fps: 25,
    moment: {
        start: 40, end: 89, start_s: 1.6, end_s: 3.56,
    },
    keyframes: [40, 52, 64, 76, 89],
    center: 64,
};
