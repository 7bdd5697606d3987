import { describe, expect, it } from 'vitest';
import {
    annotateBodyFromAutoAnnotation, functionRequest, isMomentSegFunction, isTextInteractor, runIdOfRequest,
    textInteractorArgs,
} from '../src/ts/lambda';
import { run } from './fixtures';

describe('CVAT\'s model calls taken over by the plugin', () => {
    it('knows the two MomentSeg functions by their Nuclio names', () => {
        expect(isMomentSegFunction({ id: 'momentseg' })).toBe(true);
        expect(isMomentSegFunction({ id: 'pth-facebookresearch-sam-vit-h' })).toBe(false);
        expect(isTextInteractor({ id: 'momentseg-interactor' })).toBe(true);
        expect(isTextInteractor({ id: 'momentseg' })).toBe(false);
    });

    it('the interactor gets the text and empty point lists (CVAT requires them present)', () => {
        expect(textInteractorArgs('  the cup ')).toEqual({
            text_prompts: ['the cup'], pos_points: [], neg_points: [], obj_bbox: [],
        });
    });

    it('Automatic annotation becomes a whole-video run with the mapped label and shape type', () => {
        const { body } = annotateBodyFromAutoAnnotation(7, {
            mapping: { object: { name: 'dog' } }, cleanup: true, conv_mask_to_poly: true,
        }, ' a dog ');
        expect(body).toEqual({
            kind: 'annotate',
            task: 7,
            job: null,
            frames: null,
            prompt: 'a dog',
            label: 'dog',
            output: 'polygon',
            create_moment_label: false,
            options: {},
        });
        expect(annotateBodyFromAutoAnnotation(7, { mapping: {} }, 'a dog').error).toMatch(/Map the function's label/);
    });

    it('hands CVAT a request it can list, and knows its own ids back', () => {
        const request = functionRequest(run({ id: 'abc', state: 'running', percent: 30 }), 'momentseg');
        expect(request).toEqual({
            id: 'momentseg:abc', function: { id: 'momentseg', task: 7 }, status: 'started', progress: 30, exc_info: null,
        });
        expect(functionRequest(run({ state: 'done' }), 'momentseg').status).toBe('finished');
        expect(functionRequest(run({ state: 'cancelled' }), 'momentseg')).toMatchObject({ status: 'failed', exc_info: 'Cancelled.' });
        expect(runIdOfRequest('momentseg:abc')).toBe('abc');
        expect(runIdOfRequest('rq-123')).toBeNull();
        expect(runIdOfRequest('momentseg:')).toBeNull();
        expect(runIdOfRequest(5)).toBeNull();
    });
});
