// Geometry of the moment on CVAT's player slider: the slider places frame f of a job spanning
// [first, last] at (f - first) / (last - first) of its width, so the band and marks use the same scale.

import type { RunResult } from './api';

export type MarkKind = 'keyframe' | 'center';

export interface Mark {
    frame: number;
    left: number; // percent of the slider's width
    kind: MarkKind;
}

export interface Band {
    start: number; // first frame of the moment inside the job
    end: number; // last frame of the moment inside the job
    left: number; // percent
    width: number; // percent
}

export interface MomentGeometry {
    band: Band | null;
    marks: Mark[];
}

/** Where frame f sits on a slider running from `first` to `last` (inclusive), in percent. */
export function sliderPercent(frame: number, first: number, last: number): number {
    if (last <= first) return 0;
    return ((frame - first) / (last - first)) * 100;
}

/** The frame under a point at `fraction` (0..1) of the slider's width, rounded to the nearest frame. */
export function frameAtFraction(fraction: number, first: number, last: number): number {
    const clamped = Math.max(0, Math.min(1, fraction));
    return Math.round(first + clamped * (last - first));
}

/**
 * The band over the moment's frames and the marks at the keyframes and c*, clipped to the job's frames
 * [first, last]; parts outside the job are not drawn. c* is marked as `center`, not also as a keyframe.
 */
export function momentGeometry(result: RunResult, first: number, last: number): MomentGeometry {
    let band: Band | null = null;
    if (result.moment) {
        const start = Math.max(result.moment.start, first);
        const end = Math.min(result.moment.end, last);
        if (start <= end) {
            const left = sliderPercent(start, first, last);
            band = { start, end, left, width: sliderPercent(end, first, last) - left };
        }
    }
    const inside = (frame: number): boolean => frame >= first && frame <= last;
    const marks: Mark[] = [...new Set(result.keyframes)]
        .filter((frame) => inside(frame) && frame !== result.center)
        .sort((a, b) => a - b)
        .map((frame) => ({ frame, left: sliderPercent(frame, first, last), kind: 'keyframe' as const }));
    if (result.center !== null && inside(result.center)) {
        marks.push({ frame: result.center, left: sliderPercent(result.center, first, last), kind: 'center' });
    }
    return { band, marks };
}

/** The frame a click on the band jumps to: the frame under the pointer, kept inside the band. */
export function bandClickFrame(band: Band, fraction: number, first: number, last: number): number {
    const frame = frameAtFraction(fraction, first, last);
    return Math.max(band.start, Math.min(band.end, frame));
}
