import { describe, expect, it } from 'vitest';
import {
    describeRun, isFinished, momentText, runsWithMoments,
} from '../src/ts/progress';
import { doneResult, run } from './fixtures';

describe('what the dialog shows for a run', () => {
    it('a queued run says how many runs are ahead', () => {
        expect(describeRun(run({ position: 2 })).title).toBe('Queued: 2 runs ahead');
        expect(describeRun(run({ position: 1 })).title).toBe('Queued: 1 run ahead');
        expect(describeRun(run({ position: 0 })).title).toBe('Queued: next to start');
        expect(describeRun(run()).finished).toBe(false);
    });

    it('a running run shows its stage and a clamped percent', () => {
        const view = describeRun(run({ state: 'running', stage: 'propagation', percent: 57.4 }));
        expect(view.title).toBe('Propagation…');
        expect(view.percent).toBe(57);
        expect(view.tone).toBe('active');
        expect(describeRun(run({ state: 'running', percent: 140 })).percent).toBe(100);
    });

    it('a done run names the object, the frames and the moment in frames and seconds', () => {
        const view = describeRun(run({ state: 'done', percent: 100, result: doneResult }));
        expect(view.finished).toBe(true);
        expect(view.tone).toBe('success');
        expect(view.details).toEqual([
            'Object 4021: masks on 90 frames.',
            'The moment: frames 40–89 (1.60 s – 3.56 s).',
        ]);
    });

    it('a done run without a moment says so', () => {
        const view = describeRun(run({ state: 'done', result: { ...doneResult, moment: null, output: 'polygon' } }));
        expect(view.details[0]).toBe('Object 4021: polygon track on 90 frames.');
        expect(view.details[1]).toMatch(/No moment found/);
    });

    it('a failed run shows the service\'s plain words', () => {
        const view = describeRun(run({ state: 'failed', error: 'Label "dog" is not in task 7.' }));
        expect(view.tone).toBe('error');
        expect(view.details).toEqual(['Label "dog" is not in task 7.']);
        expect(isFinished(run({ state: 'failed' }))).toBe(true);
    });

    it('the moment text', () => {
        expect(momentText(doneResult.moment)).toBe('frames 40–89 (1.60 s – 3.56 s)');
    });

    it('only finished runs with a moment draw on the timeline', () => {
        const runs = [
            run({ id: 'a', state: 'done', result: doneResult }),
            run({ id: 'b', state: 'running' }),
            run({ id: 'c', state: 'done', result: { ...doneResult, moment: null } }),
        ];
        expect(runsWithMoments(runs).map((r) => r.id)).toEqual(['a']);
    });
});
