// "Refine by text": which object a selected shape or track belongs to. MomentSeg writes an object as
// shapes sharing one group, whose id is the object id (the same id `momentseg cvat refine --object` takes).

import type { OptionValues, RefineBody } from './api';

/** What the plugin reads of CVAT's ObjectState for the selected object. */
export interface SelectedObject {
    group: { id: number } | null;
    source: string;
}

// `manual` shapes are the person's own; MomentSeg only ever refines its own object.
const TOOL_SOURCES = new Set(['auto', 'semi-auto']);

export function refineObjectId(selected: SelectedObject | null): { object: number; error: null } | { object: null; error: string } {
    if (!selected) {
        return { object: null, error: 'Select an object that MomentSeg made (click it on the canvas), then refine.' };
    }
    if (!TOOL_SOURCES.has(selected.source) || !selected.group || selected.group.id <= 0) {
        return { object: null, error: 'The selected object was not made by MomentSeg, so there is nothing to refine.' };
    }
    return { object: selected.group.id, error: null };
}

export function refineBody(task: number, object: number, prompt: string, options: OptionValues): RefineBody {
    const text = prompt.trim();
    return {
        kind: 'refine', task, object, prompt: text || null, options,
    };
}
