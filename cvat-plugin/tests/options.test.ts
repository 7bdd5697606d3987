import { describe, expect, it } from 'vitest';
import { changedOptions, optionFields } from '../src/ts/options';

const declared = [
    {
        name: 'num_keyframes', type: 'int', default: 6, minimum: 1, maximum: 32, help: 'Keyframes', symbol: 'K',
    },
    {
        name: 'mask_threshold', type: 'float', default: 0.5, minimum: 0, maximum: 1, help: 'Mask threshold',
    },
    {
        name: 'sampling', type: 'str', default: 'moment', choices: ['moment', 'uniform'], help: 'Sampling',
    },
    { name: 'bidirectional', type: 'bool', default: true, help: 'Both directions' },
];

describe('method options from the service\'s declarations', () => {
    it('one field per declaration, kinds and labels from the declaration', () => {
        const fields = optionFields(declared);
        expect(fields.map((f) => f.kind)).toEqual(['integer', 'number', 'choice', 'boolean']);
        expect(fields[0].label).toBe('num keyframes (K)');
        expect(fields[0].maximum).toBe(32);
        expect(fields[3].minimum).toBeUndefined();
    });

    it('sends only what the person changed', () => {
        const fields = optionFields(declared);
        expect(changedOptions(fields, {
            num_keyframes: 6, mask_threshold: 0.7, sampling: 'moment', bidirectional: false,
        })).toEqual({ options: { mask_threshold: 0.7, bidirectional: false }, error: null });
        expect(changedOptions(fields, {}).options).toEqual({});
    });

    it('refuses values outside the declared bounds, naming the option', () => {
        const fields = optionFields(declared);
        expect(changedOptions(fields, { num_keyframes: 40 }).error).toBe('num keyframes (K): at most 32.');
        expect(changedOptions(fields, { num_keyframes: 2.5 }).error).toMatch(/whole number/);
        expect(changedOptions(fields, { mask_threshold: -1 }).error).toMatch(/at least 0/);
        expect(changedOptions(fields, { sampling: 'random' }).error).toMatch(/one of moment, uniform/);
    });
});
