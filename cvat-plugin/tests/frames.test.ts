import { describe, expect, it } from 'vitest';
import { frameSpan, rangeChoices } from '../src/ts/frames';

const job = { id: 12, startFrame: 100, stopFrame: 199 };
const none = { from: null, to: null };

describe('frame-range choices', () => {
    it('offers "this job" only from a job', () => {
        expect(rangeChoices(300, job).map((c) => c.value)).toEqual(['task', 'job', 'range']);
        expect(rangeChoices(300, null).map((c) => c.value)).toEqual(['task', 'range']);
        expect(rangeChoices(300, job)[1].label).toBe('This job (frames 100–199)');
    });

    it('the whole task is sent as null, the job as its frames with an exclusive stop', () => {
        expect(frameSpan('task', 300, job, none, 1000)).toEqual({ span: null, error: null });
        expect(frameSpan('job', 300, job, none, 1000)).toEqual({ span: { start: 100, stop: 200 }, error: null });
    });

    it('a typed range is inclusive for the person and exclusive on the wire', () => {
        expect(frameSpan('range', 300, null, { from: 10, to: 19 }, 1000).span).toEqual({ start: 10, stop: 20 });
    });

    it('refuses ranges outside the task, reversed or empty, naming the problem', () => {
        expect(frameSpan('range', 300, null, { from: 10, to: 300 }, 1000).error).toMatch(/within the task's frames 0–299/);
        expect(frameSpan('range', 300, null, { from: 20, to: 10 }, 1000).error).toMatch(/comes after/);
        expect(frameSpan('range', 300, null, none, 1000).error).toMatch(/Type the first and the last/);
        expect(frameSpan('range', 300, null, { from: 1.5, to: 3 }, 1000).error).toMatch(/Type the first/);
        expect(frameSpan('job', 300, null, none, 1000).error).toMatch(/no job/);
    });

    it('refuses more frames than one run takes, before anything is queued', () => {
        expect(frameSpan('task', 300, job, none, 200).error).toMatch(/300 frames is more than MomentSeg takes in one run \(200\)/);
        expect(frameSpan('job', 300, job, none, 100).error).toBeNull();
    });
});

describe('a job whose task the person may not open', () => {
    it('offers the whole task without its frame numbers and checks only what it knows', () => {
        expect(rangeChoices(null, job)[0].label).toBe('Whole task');
        expect(frameSpan('task', null, job, none, 10)).toEqual({ span: null, error: null });
        expect(frameSpan('range', null, job, { from: 500, to: 520 }, 1000).span).toEqual({ start: 500, stop: 521 });
        expect(frameSpan('range', null, job, { from: -1, to: 5 }, 1000).error).toBe('The range must lie from frame 0 on.');
    });
});
