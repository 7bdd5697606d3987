import {
    afterEach, beforeEach, describe, expect, it, vi,
} from 'vitest';
import type { Run } from '../src/ts/api';
import { getRun } from '../src/ts/service';
import { POLL_MS, RunWatcher } from '../src/ts/watcher';
import { doneResult, run } from './fixtures';

vi.mock('../src/ts/service', () => ({ getRun: vi.fn() }));

const answers = (...runs: Run[]): void => {
    for (const answer of runs) vi.mocked(getRun).mockResolvedValueOnce(answer);
};

describe('following runs after their dialog is closed', () => {
    beforeEach(() => {
        vi.useFakeTimers();
        vi.stubGlobal('window', globalThis);
    });
    afterEach(() => {
        vi.useRealTimers();
        vi.unstubAllGlobals();
        vi.mocked(getRun).mockReset();
    });

    it('polls a run until it finishes, telling listeners each state and the owner once', async () => {
        const finished = vi.fn();
        const seen: string[] = [];
        const watcher = new RunWatcher(finished);
        watcher.subscribe((update) => seen.push(update.state));
        answers(run({ state: 'running', percent: 40 }), run({ state: 'done', result: doneResult }));

        watcher.watch(run());
        await vi.advanceTimersByTimeAsync(POLL_MS);
        await vi.advanceTimersByTimeAsync(POLL_MS);
        await vi.advanceTimersByTimeAsync(5 * POLL_MS);

        expect(seen).toEqual(['queued', 'running', 'done']);
        expect(finished).toHaveBeenCalledTimes(1);
        expect(finished.mock.calls[0][0].result.object).toBe(4021);
        expect(getRun).toHaveBeenCalledTimes(2);
    });

    it('a finished run handed in again is not reported twice', () => {
        const finished = vi.fn();
        const watcher = new RunWatcher(finished);
        watcher.watch(run({ state: 'cancelled' }));
        watcher.watch(run({ state: 'cancelled' }));
        expect(finished).toHaveBeenCalledTimes(1);
        expect(getRun).not.toHaveBeenCalled();
    });

    it('a missed poll is retried, not taken for the end of the run', async () => {
        const finished = vi.fn();
        const watcher = new RunWatcher(finished);
        vi.mocked(getRun).mockRejectedValueOnce(new Error('MomentSeg did not answer in time.'));
        answers(run({ state: 'failed', error: 'Label "dog" is not in task 7.' }));

        watcher.watch(run());
        await vi.advanceTimersByTimeAsync(POLL_MS);
        expect(finished).not.toHaveBeenCalled();
        await vi.advanceTimersByTimeAsync(POLL_MS);
        expect(finished).toHaveBeenCalledTimes(1);
        expect(finished.mock.calls[0][0].error).toBe('Label "dog" is not in task 7.');
    });

    it('stops polling when stopped', async () => {
        const watcher = new RunWatcher(vi.fn());
        watcher.watch(run());
        watcher.stop();
        await vi.advanceTimersByTimeAsync(3 * POLL_MS);
        expect(getRun).not.toHaveBeenCalled();
    });
});
