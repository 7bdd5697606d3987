import { describe, expect, it } from 'vitest';
import { annotateBody, type AnnotateContext, type AnnotateForm } from '../src/ts/annotate';

const context: AnnotateContext = {
    task: 7,
    taskSize: 300,
    taskLabels: ['dog', 'cat'],
    job: { id: 12, startFrame: 100, stopFrame: 199 },
    fields: [],
    maxFrames: 20000,
    maxPromptChars: 40,
};

const form: AnnotateForm = {
    prompt: '  the dog jumping  ',
    label: 'dog',
    output: 'mask',
    createMomentLabel: true,
    range: 'job',
    from: null,
    to: null,
    options: {},
};

describe('the annotate request from the dialog', () => {
    it('builds the body the runs API takes', () => {
        expect(annotateBody(form, context)).toEqual({
            body: {
                kind: 'annotate',
                task: 7,
                job: 12,
                frames: { start: 100, stop: 200 },
                prompt: 'the dog jumping',
                label: 'dog',
                output: 'mask',
                create_moment_label: true,
                options: {},
            },
            error: null,
        });
    });

    it('only a run on "this job" names the job', () => {
        const { body } = annotateBody({ ...form, range: 'range', from: 0, to: 9 }, context);
        expect(body).toMatchObject({ job: null, frames: { start: 0, stop: 10 } });
    });

    it('the whole task from the task menu has no job and no frames', () => {
        const { body } = annotateBody({ ...form, range: 'task', output: 'polygon' }, { ...context, job: null });
        expect(body).toMatchObject({ job: null, frames: null, output: 'polygon' });
    });

    it('refuses an empty or too long sentence and a label the task lacks', () => {
        expect(annotateBody({ ...form, prompt: '   ' }, context).error).toMatch(/Type what to find/);
        expect(annotateBody({ ...form, prompt: 'x'.repeat(41) }, context).error).toBe('The sentence is 41 characters; at most 40.');
        expect(annotateBody({ ...form, label: 'horse' }, context).error).toMatch(/task's labels/);
    });

    it('passes on the frame range\'s problem', () => {
        expect(annotateBody({ ...form, range: 'range', from: 5, to: 2 }, context).error).toMatch(/comes after/);
    });
});
