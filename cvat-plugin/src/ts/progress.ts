// What the dialog and the runs view show for a run: its state in plain words, a percent, the result.

import type { Moment, Run } from './api';

export type Tone = 'active' | 'success' | 'error' | 'normal';

export interface RunView {
    title: string;
    percent: number;
    tone: Tone;
    finished: boolean;
    details: string[];
}

const FINISHED = new Set(['done', 'failed', 'cancelled']);

export function isFinished(run: Run): boolean {
    return FINISHED.has(run.state);
}

function seconds(value: number): string {
    return `${value.toFixed(2)} s`;
}

function plural(count: number, word: string): string {
    return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/** The moment as the person reads it: frames (inclusive) and seconds. */
export function momentText(moment: Moment): string {
    return `frames ${moment.start}–${moment.end} (${seconds(moment.start_s)} – ${seconds(moment.end_s)})`;
}

function queuedTitle(position: number | null): string {
    if (position === null || position <= 0) return 'Queued: next to start';
    return `Queued: ${plural(position, 'run')} ahead`;
}

function capitalised(text: string): string {
    return text.charAt(0).toUpperCase() + text.slice(1);
}

export function describeRun(run: Run): RunView {
    const percent = Math.max(0, Math.min(100, Math.round(run.percent)));
    switch (run.state) {
        case 'queued':
            return { title: queuedTitle(run.position), percent: 0, tone: 'normal', finished: false, details: [] };
        case 'running':
            return {
                title: run.stage ? `${capitalised(run.stage)}…` : 'Starting…',
                percent,
                tone: 'active',
                finished: false,
                details: [],
            };
        case 'cancelled':
            return {
                title: 'Cancelled', percent, tone: 'normal', finished: true, details: ['Nothing was written.'],
            };
        case 'failed':
            return {
                title: 'Failed',
                percent,
                tone: 'error',
                finished: true,
                details: [run.error || 'The run failed without saying why.'],
            };
        case 'done': {
            const details: string[] = [];
            if (run.result) {
                const { result } = run;
                const shapes = result.output === 'polygon' ? 'polygon track' : 'masks';
                details.push(`Object ${result.object}: ${shapes} on ${plural(result.frames_written, 'frame')}.`);
                details.push(result.moment ?
                    `The moment: ${momentText(result.moment)}.` :
                    'No moment found: the sentence does not match a stretch of this video.');
            }
            return { title: 'Done', percent: 100, tone: 'success', finished: true, details };
        }
        default:
            return { title: String(run.state), percent, tone: 'normal', finished: false, details: [] };
    }
}

/** Runs that draw on the timeline: finished ones with a moment, newest first as the API lists them. */
export function runsWithMoments(runs: Run[]): Run[] {
    return runs.filter((run) => run.state === 'done' && run.result !== null && run.result.moment !== null);
}
