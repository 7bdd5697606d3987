// The little of CVAT's UI (cvat-core objects, the redux store, the plugin entry point) the plugin
// uses, typed here so the plugin builds outside cvat-ui's tree too.

import type { SelectedObject } from './refine';

export interface Label {
    id: number;
    name: string;
    type: string;
}

export interface Task {
    id: number;
    size: number | null; // null: known only as the job's task (its assignee may not open the task)
    labels: Label[];
}

export interface Job {
    id: number;
    taskId: number;
    labels: Label[];
    startFrame: number;
    stopFrame: number;
    annotations: {
        hasUnsavedChanges(): boolean;
        save(): Promise<void>;
        clear(options: { reload: boolean }): Promise<void>;
    };
    actions: { clear(): Promise<void> };
}

export interface MLModel {
    id: string;
    name: string;
}

export interface CVATCore {
    tasks: { get(filter: { id: number }): Promise<Task[]> };
    plugins: { register(plugin: object): Promise<void> };
}

interface ObjectState extends SelectedObject {
    clientID: number;
}

export interface CVATState {
    annotation: {
        job: { instance: Job | null };
        player: { frame: { number: number } };
        annotations: { activatedStateID: number | null; states: ObjectState[] };
    };
}

export interface Store {
    getState(): CVATState;
}

export type Dispatch = (action: unknown) => unknown;

export interface ActionCreators {
    changeFrameAsync(frame: number, fillBuffer?: boolean, frameStep?: number, forceUpdate?: boolean): unknown;
    addUIComponent(path: string, component: unknown, data?: { weight?: number }): unknown;
    removeUIComponent(path: string, component: unknown): unknown;
}

export interface BuilderArgs {
    core: CVATCore;
    store: Store;
    dispatch: Dispatch;
    actionCreators: ActionCreators;
}

export type ComponentBuilder = (args: BuilderArgs) => { name: string; destructor: () => void };

/** The job open in the annotation view, or null anywhere else. */
export function openJob(store: Store): Job | null {
    return store.getState().annotation.job.instance ?? null;
}

/** The object selected on the canvas, or null. */
export function selectedObject(store: Store): SelectedObject | null {
    const { activatedStateID, states } = store.getState().annotation.annotations;
    if (activatedStateID === null) return null;
    return states.find((state) => state.clientID === activatedStateID) ?? null;
}

/**
 * Loads the job's annotations again from the server and redraws the current frame, as CVAT does after
 * "Upload annotations" — without reloading the page. Callers make sure nothing unsaved is lost first.
 */
export async function reloadAnnotations(job: Job, store: Store, dispatch: Dispatch, actions: ActionCreators): Promise<void> {
    await job.annotations.clear({ reload: true });
    await job.actions.clear();
    // CVAT first empties the objects so the canvas does not mix old and new shapes of one client id
    dispatch({ type: 'UPLOAD_JOB_ANNOTATIONS_SUCCESS' });
    const frame = store.getState().annotation.player.frame.number;
    await dispatch(actions.changeFrameAsync(frame, false, 1, true));
}
