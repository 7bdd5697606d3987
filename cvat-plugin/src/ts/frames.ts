// The frame range an annotate run covers: the whole task, this job, or a range the person types.
// Frames are task frames (as CVAT's jobs number them); spans sent to the service stop exclusively.
// The task's size is null where the person may open the job but not the task (a job's assignee).

import type { FrameSpan } from './api';

export type RangeChoice = 'task' | 'job' | 'range';

export interface JobFrames {
    id: number;
    startFrame: number;
    stopFrame: number; // inclusive, as CVAT's Job has it
}

export interface RangeChoiceOption {
    value: RangeChoice;
    label: string;
}

/** The choices offered: "this job" only where the dialog was opened from a job. */
export function rangeChoices(taskSize: number | null, job: JobFrames | null): RangeChoiceOption[] {
    const whole = taskSize === null ? 'Whole task' : `Whole task (frames 0–${taskSize - 1})`;
    const choices: RangeChoiceOption[] = [{ value: 'task', label: whole }];
    if (job) {
        choices.push({ value: 'job', label: `This job (frames ${job.startFrame}–${job.stopFrame})` });
    }
    choices.push({ value: 'range', label: 'Frames from … to …' });
    return choices;
}

export type SpanOrError = { span: FrameSpan | null; error: null } | { span: null; error: string };

/**
 * The span to send for a choice, or the reason it cannot be sent. `from`/`to` are the typed range
 * (inclusive). A whole task is sent as null (the service takes every frame); longer than `maxFrames`
 * is refused here, before anything is queued.
 */
export function frameSpan(
    choice: RangeChoice,
    taskSize: number | null,
    job: JobFrames | null,
    typed: { from: number | null; to: number | null },
    maxFrames: number,
): SpanOrError {
    let span: FrameSpan | null;
    if (choice === 'task') {
        span = null;
    } else if (choice === 'job') {
        if (!job) return { span: null, error: 'There is no job to take the frames from.' };
        span = { start: job.startFrame, stop: job.stopFrame + 1 };
    } else {
        const { from, to } = typed;
        if (from === null || to === null || !Number.isInteger(from) || !Number.isInteger(to)) {
            return { span: null, error: 'Type the first and the last frame of the range.' };
        }
        if (from < 0 || (taskSize !== null && to > taskSize - 1)) {
            const within = taskSize === null ? 'from frame 0 on' : `within the task's frames 0–${taskSize - 1}`;
            return { span: null, error: `The range must lie ${within}.` };
        }
        if (from > to) return { span: null, error: 'The first frame comes after the last one.' };
        span = { start: from, stop: to + 1 };
    }
    const count = span ? span.stop - span.start : taskSize;
    if (count !== null && count > maxFrames) {
        return {
            span: null,
            error: `${count} frames is more than MomentSeg takes in one run (${maxFrames}); choose a shorter range.`,
        };
    }
    return { span, error: null };
}
