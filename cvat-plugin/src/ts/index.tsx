// MomentSeg's CVAT UI plugin: registers its menu items, the moment band on the player's slider, the
// text box for the text interactor, and core hooks, when CVAT's UI says plugins may register.

import React from '@modules/react';
import Modal from '@modules/antd/lib/modal';
import message from '@modules/antd/lib/message';

import type { Run } from './api';
import AnnotateDialog from './annotate-dialog';
import {
    openJob, reloadAnnotations, selectedObject,
    type BuilderArgs, type ComponentBuilder, type Job, type MLModel, type Task,
} from './cvat';
import InteractorText, { interactorText } from './interactor-text';
import {
    annotateBodyFromAutoAnnotation, functionRequest, isMomentSegFunction, isTextInteractor, rqStatus,
    runIdOfRequest, textInteractorArgs, type AutoAnnotationArgs,
} from './lambda';
import MomentBand from './moment-band';
import { openDialog } from './mount';
import { isFinished } from './progress';
import RefineDialog from './refine-dialog';
import { refineObjectId } from './refine';
import RunsView from './runs-view';
import { askSentence } from './sentence-prompt';
import { cancelRun, getRun, startRun } from './service';
import { RunWatcher } from './watcher';

const NAME = 'MomentSeg';

// after CVAT's own items (they weigh 10..110)
const MENU_WEIGHT = 200;

interface MenuItemArgs {
    key: string | number;
    targetProps: { jobInstance?: Job; taskInstance?: Task };
}

const builder: ComponentBuilder = ({
    core, store, dispatch, actionCreators,
}: BuilderArgs) => {
    const taskOf = async (taskId: number): Promise<Task> => {
        const [task] = await core.tasks.get({ id: taskId });
        if (!task) throw new Error(`Task ${taskId} cannot be opened with your account.`);
        return task;
    };

    /** The open job loads its annotations again; unsaved work is saved first when the person agrees. */
    const loadIntoJob = (job: Job, done: string): void => {
        const reload = async (): Promise<void> => {
            await reloadAnnotations(job, store, dispatch, actionCreators);
            message.success(done);
        };
        if (!job.annotations.hasUnsavedChanges()) {
            reload().catch((error: Error) => message.error(error.message));
            return;
        }
        Modal.confirm({
            title: 'Load MomentSeg\'s annotations',
            className: 'momentseg-unsaved-confirm',
            content: 'You have unsaved changes in this job. Save them and load MomentSeg\'s object? '
                + 'Nothing of yours is discarded; choose “Not now” to keep working and load it later '
                + 'from “MomentSeg runs”.',
            okText: 'Save and load',
            cancelText: 'Not now',
            onOk: async () => {
                await job.annotations.save();
                await reload();
            },
        });
    };

    /** A finished run of the open job's task reaches the job without a page reload. */
    const bringIntoJob = (run: Run): void => {
        const job = openJob(store);
        if (run.state !== 'done' || !job || job.taskId !== run.task) return;
        loadIntoJob(job, `MomentSeg: object ${run.result?.object} is in the job.`);
    };

    const watcher = new RunWatcher(bringIntoJob);

    const openAnnotate = (taskId: number, job: Job | null): void => {
        // a job's assignee may open the job but not its task: the job's labels then stand for the task's
        const known = taskOf(taskId).catch((error: Error): Task => {
            if (!job) throw error;
            return { id: taskId, size: null, labels: job.labels };
        });
        known.then((task) => {
            openDialog((close) => <AnnotateDialog task={task} job={job} watcher={watcher} onClose={close} />);
        }, (error: Error) => message.error(error.message));
    };

    const openRuns = (taskId: number, job: Job | null): void => {
        const load = job ? () => loadIntoJob(job, 'MomentSeg: the job shows the latest results.') : null;
        openDialog((close) => <RunsView task={taskId} watcher={watcher} onLoad={load} onClose={close} />);
    };

    const openRefine = (job: Job): void => {
        const { object, error } = refineObjectId(selectedObject(store));
        if (error !== null) {
            Modal.warning({ title: 'Refine by text', content: error, className: 'momentseg-refine-refused' });
            return;
        }
        openDialog((close) => <RefineDialog job={job} object={object} watcher={watcher} onClose={close} />);
    };

    const annotationMenu = ({ key, targetProps: { jobInstance } }: MenuItemArgs): object => ({
        key,
        label: 'MomentSeg',
        className: 'momentseg-menu',
        children: [
            {
                key: `${key}-annotate`,
                label: 'Annotate by text…',
                className: 'momentseg-menu-annotate',
                onClick: () => jobInstance && openAnnotate(jobInstance.taskId, jobInstance),
            },
            {
                key: `${key}-refine`,
                label: 'Refine by text…',
                className: 'momentseg-menu-refine',
                onClick: () => jobInstance && openRefine(jobInstance),
            },
            {
                key: `${key}-runs`,
                label: 'MomentSeg runs',
                className: 'momentseg-menu-runs',
                onClick: () => jobInstance && openRuns(jobInstance.taskId, jobInstance),
            },
        ],
    });

    const taskMenu = ({ key, targetProps: { taskInstance } }: MenuItemArgs): object => ({
        key,
        label: 'MomentSeg',
        className: 'momentseg-menu',
        children: [
            {
                key: `${key}-annotate`,
                label: 'Annotate by text…',
                className: 'momentseg-menu-annotate',
                onClick: () => taskInstance && openAnnotate(taskInstance.id, null),
            },
            {
                key: `${key}-runs`,
                label: 'MomentSeg runs',
                className: 'momentseg-menu-runs',
                onClick: () => taskInstance && openRuns(taskInstance.id, null),
            },
        ],
    });

    const jobMenu = ({ key, targetProps: { jobInstance } }: MenuItemArgs): object => ({
        key,
        label: 'Annotate by text…',
        className: 'momentseg-menu-annotate',
        onClick: () => jobInstance && openAnnotate(jobInstance.taskId, jobInstance),
    });

    const Band = ({ targetProps }: { targetProps: React.ComponentProps<typeof MomentBand>['targetProps'] }): JSX.Element => (
        <MomentBand
            targetProps={targetProps}
            taskId={openJob(store)?.taskId ?? null}
            watcher={watcher}
            jump={(frame) => dispatch(actionCreators.changeFrameAsync(frame))}
        />
    );

    const components: [string, unknown][] = [
        ['annotationPage.menuActions.items', annotationMenu],
        ['taskActions.items', taskMenu],
        ['jobActions.items', jobMenu],
        ['annotationPage.player.slider', Band],
        ['aiTools.interactors.extras', InteractorText],
    ];
    for (const [path, component] of components) {
        dispatch(actionCreators.addUIComponent(path, component, { weight: MENU_WEIGHT }));
    }

    // The core's hooks: an `enter` returning null lets CVAT's own call go ahead.
    const hooks = {
        name: NAME,
        description: 'Text-prompted video segmentation and moments from MomentSeg',
        cvat: {
            lambda: {
                call: {
                    async enter(_plugin: unknown, _task: number, model: MLModel, args: Record<string, unknown>) {
                        if (!isTextInteractor(model)) return null;
                        if (!interactorText.value.trim()) {
                            throw new Error('Type what to find in the MomentSeg text box first.');
                        }
                        // CVAT passes this object on to its server, so the text goes with it
                        Object.assign(args, textInteractorArgs(interactorText.value));
                        return null;
                    },
                },
                run: {
                    async enter(_plugin: unknown, task: number, model: MLModel, args: AutoAnnotationArgs) {
                        if (!isMomentSegFunction(model)) return null;
                        const sentence = await askSentence(Boolean(args.cleanup));
                        if (sentence === null) throw new Error('MomentSeg was not started: it needs a sentence.');
                        const { body, error } = annotateBodyFromAutoAnnotation(task, args, sentence);
                        if (error !== null) throw new Error(error);
                        const run = await startRun(body);
                        watcher.watch(run);
                        return { preventMethodCallWithReturn: functionRequest(run, model.id) };
                    },
                },
                listen: {
                    async enter(
                        _plugin: unknown,
                        requestId: string,
                        onUpdate: (status: string, progress: number, message?: string) => void,
                    ) {
                        const runId = runIdOfRequest(requestId);
                        if (runId === null) return null;
                        const unsubscribe = watcher.subscribe((run) => {
                            if (run.id !== runId) return;
                            onUpdate(rqStatus(run), run.percent, run.error ?? undefined);
                            if (isFinished(run)) unsubscribe();
                        });
                        watcher.watch(await getRun(runId));
                        return { preventMethodCall: true };
                    },
                },
                cancel: {
                    async enter(_plugin: unknown, requestId: string) {
                        const runId = runIdOfRequest(requestId);
                        if (runId === null) return null;
                        watcher.watch(await cancelRun(runId));
                        return { preventMethodCall: true };
                    },
                },
            },
        },
    };
    core.plugins.register(hooks);

    return {
        name: NAME,
        destructor: () => {
            watcher.stop();
            for (const [path, component] of components) {
                dispatch(actionCreators.removeUIComponent(path, component));
            }
        },
    };
};

function register(): void {
    if (Object.prototype.hasOwnProperty.call(window, 'cvatUI')) {
        (window as unknown as { cvatUI: { registerComponent: (builder: ComponentBuilder) => void } })
            .cvatUI.registerComponent(builder);
    }
}

window.addEventListener('plugins.ready', register, { once: true });
