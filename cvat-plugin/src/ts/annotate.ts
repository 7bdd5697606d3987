// The "Annotate by text" dialog's form turned into the run request, with every check done before
// anything is queued.

import type { AnnotateBody, Output, OptionValues } from './api';
import { frameSpan, type JobFrames, type RangeChoice } from './frames';
import { changedOptions, type OptionField } from './options';

export interface AnnotateForm {
    prompt: string;
    label: string;
    output: Output;
    createMomentLabel: boolean;
    range: RangeChoice;
    from: number | null;
    to: number | null;
    options: OptionValues;
}

export interface AnnotateContext {
    task: number;
    taskSize: number | null;
    taskLabels: string[];
    job: JobFrames | null;
    fields: OptionField[];
    maxFrames: number;
    maxPromptChars: number;
}

export function annotateBody(
    form: AnnotateForm,
    context: AnnotateContext,
): { body: AnnotateBody; error: null } | { body: null; error: string } {
    const prompt = form.prompt.trim();
    if (!prompt) return { body: null, error: 'Type what to find, e.g. "the dog that jumps into the water".' };
    if (prompt.length > context.maxPromptChars) {
        return { body: null, error: `The sentence is ${prompt.length} characters; at most ${context.maxPromptChars}.` };
    }
    if (!context.taskLabels.includes(form.label)) {
        return { body: null, error: 'Choose one of the task\'s labels for the object.' };
    }
    const span = frameSpan(form.range, context.taskSize, context.job, form, context.maxFrames);
    if (span.error !== null) return { body: null, error: span.error };
    const options = changedOptions(context.fields, form.options);
    if (options.error !== null) return { body: null, error: options.error };
    return {
        body: {
            kind: 'annotate',
            task: context.task,
            // a run on "this job" is the job's (its assignee may start it); other ranges are the task's
            job: form.range === 'job' && context.job ? context.job.id : null,
            frames: span.span,
            prompt,
            label: form.label,
            output: form.output,
            create_moment_label: form.createMomentLabel,
            options: options.options,
        },
        error: null,
    };
}
