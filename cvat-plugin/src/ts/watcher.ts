// The runs this page follows: polled until finished whether or not a dialog shows them, so a run
// survives its dialog being closed and its result still reaches the open job.

import type { Run } from './api';
import { isFinished } from './progress';
import { getRun } from './service';

export const POLL_MS = 1500;

type Listener = (run: Run) => void;

export class RunWatcher {
    private runs = new Map<string, Run>();

    private finished = new Set<string>();

    private listeners = new Set<Listener>();

    private timer: number | null = null;

    constructor(private readonly onFinished: (run: Run) => void) {}

    /** Follows a run; `onFinished` is called once per run, when it is done, failed or cancelled. */
    watch(run: Run): void {
        this.update(run);
        if (!isFinished(run)) this.schedule();
    }

    subscribe(listener: Listener): () => void {
        this.listeners.add(listener);
        return () => this.listeners.delete(listener);
    }

    stop(): void {
        if (this.timer !== null) window.clearTimeout(this.timer);
        this.timer = null;
        this.runs.clear();
        this.finished.clear();
        this.listeners.clear();
    }

    private update(run: Run): void {
        this.listeners.forEach((listener) => listener(run));
        if (!isFinished(run)) {
            this.runs.set(run.id, run);
        } else if (!this.finished.has(run.id)) {
            this.runs.delete(run.id);
            this.finished.add(run.id);
            this.onFinished(run);
        }
    }

    private schedule(): void {
        if (this.timer === null) this.timer = window.setTimeout(() => this.poll(), POLL_MS);
    }

    private async poll(): Promise<void> {
        this.timer = null;
        await Promise.all([...this.runs.values()].map(async (run) => {
            try {
                this.update(await getRun(run.id));
            } catch {
                // a missed poll is retried on the next tick; the run goes on on the service
            }
        }));
        if (this.runs.size) this.schedule();
    }
}
