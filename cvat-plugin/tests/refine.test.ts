import { describe, expect, it } from 'vitest';
import { refineBody, refineObjectId } from '../src/ts/refine';

describe('refine by text', () => {
    it('the object id is the selected object\'s group id', () => {
        expect(refineObjectId({ group: { id: 4021 }, source: 'semi-auto' })).toEqual({ object: 4021, error: null });
        expect(refineObjectId({ group: { id: 4021 }, source: 'auto' }).object).toBe(4021);
    });

    it('refuses nothing selected, a person\'s own object and an ungrouped one', () => {
        expect(refineObjectId(null).error).toMatch(/Select an object/);
        expect(refineObjectId({ group: { id: 4021 }, source: 'manual' }).error).toMatch(/not made by MomentSeg/);
        expect(refineObjectId({ group: null, source: 'auto' }).error).toMatch(/not made by MomentSeg/);
        expect(refineObjectId({ group: { id: 0 }, source: 'auto' }).error).toMatch(/not made by MomentSeg/);
    });

    it('an empty sentence keeps the object\'s own prompt', () => {
        expect(refineBody(7, 4021, ' ', {})).toEqual({
            kind: 'refine', task: 7, object: 4021, prompt: null, options: {},
        });
        expect(refineBody(7, 4021, 'the red dog', { num_keyframes: 8 }).prompt).toBe('the red dog');
    });
});
