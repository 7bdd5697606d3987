// The method's options as the service declares them (GET /momentseg/api/about): one form field each,
// and only the values the person changed are sent (the service owns the defaults).

import type { OptionDeclaration, OptionValues } from './api';

export type FieldKind = 'integer' | 'number' | 'boolean' | 'choice' | 'text';

export interface OptionField {
    name: string;
    label: string;
    kind: FieldKind;
    defaultValue: unknown;
    choices: unknown[];
    minimum?: number;
    maximum?: number;
    help: string;
}

const KIND_OF_TYPE: Record<string, FieldKind> = {
    int: 'integer',
    integer: 'integer',
    float: 'number',
    number: 'number',
    bool: 'boolean',
    boolean: 'boolean',
    str: 'text',
    string: 'text',
};

function fieldKind(option: OptionDeclaration): FieldKind {
    if (Array.isArray(option.choices) && option.choices.length) return 'choice';
    return KIND_OF_TYPE[option.type.toLowerCase()] ?? 'text';
}

/** A label that reads like the paper: the option's name in words, with its symbol when it has one. */
function fieldLabel(option: OptionDeclaration): string {
    const words = option.name.replace(/_/g, ' ');
    return option.symbol ? `${words} (${option.symbol})` : words;
}

export function optionFields(options: OptionDeclaration[]): OptionField[] {
    return options.map((option) => ({
        name: option.name,
        label: fieldLabel(option),
        kind: fieldKind(option),
        defaultValue: option.default,
        choices: option.choices ?? [],
        ...(option.minimum === undefined ? {} : { minimum: option.minimum }),
        ...(option.maximum === undefined ? {} : { maximum: option.maximum }),
        help: option.help,
    }));
}

/** The problem with one value, or null. */
export function optionError(field: OptionField, value: unknown): string | null {
    if (field.kind === 'integer' || field.kind === 'number') {
        if (typeof value !== 'number' || Number.isNaN(value)) return `${field.label}: a number is needed.`;
        if (field.kind === 'integer' && !Number.isInteger(value)) return `${field.label}: a whole number is needed.`;
        if (field.minimum !== undefined && value < field.minimum) {
            return `${field.label}: at least ${field.minimum}.`;
        }
        if (field.maximum !== undefined && value > field.maximum) {
            return `${field.label}: at most ${field.maximum}.`;
        }
    }
    if (field.kind === 'choice' && !field.choices.includes(value)) {
        return `${field.label}: one of ${field.choices.join(', ')}.`;
    }
    return null;
}

/** The options to send: the changed ones, after checking them; or the first problem found. */
export function changedOptions(
    fields: OptionField[],
    values: OptionValues,
): { options: OptionValues; error: null } | { options: null; error: string } {
    const options: OptionValues = {};
    for (const field of fields) {
        if (!(field.name in values) || values[field.name] === undefined || values[field.name] === null) continue;
        const value = values[field.name];
        if (value === field.defaultValue) continue;
        const error = optionError(field, value);
        if (error) return { options: null, error };
        options[field.name] = value;
    }
    return { options, error: null };
}
