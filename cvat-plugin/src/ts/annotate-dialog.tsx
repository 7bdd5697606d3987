// "Annotate by text…": the sentence, the label, masks or polygons, the frame range and the method's
// options; then the run's progress and result. Closing the dialog leaves the run going.

import React, { useEffect, useState } from '@modules/react';
import Modal from '@modules/antd/lib/modal';
import Input from '@modules/antd/lib/input';
import InputNumber from '@modules/antd/lib/input-number';
import Select from '@modules/antd/lib/select';
import Radio from '@modules/antd/lib/radio';
import Checkbox from '@modules/antd/lib/checkbox';
import Alert from '@modules/antd/lib/alert';
import Space from '@modules/antd/lib/space';
import Typography from '@modules/antd/lib/typography';

import type { About, Run } from './api';
import { annotateBody, type AnnotateForm } from './annotate';
import type { Job, Task } from './cvat';
import { rangeChoices } from './frames';
import { optionFields } from './options';
import OptionsPanel from './options-panel';
import { isFinished } from './progress';
import RunProgress from './run-progress';
import { cancelRun, getAbout, startRun } from './service';
import type { RunWatcher } from './watcher';

// the label the service tags the moment's frames with (its `moment_label` default)
const MOMENT_LABEL = 'moment';

export interface AnnotateDialogProps {
    task: Task;
    job: Job | null;
    watcher: RunWatcher;
    onClose: () => void;
}

export function useWatchedRun(watcher: RunWatcher, initial: Run | null): [Run | null, (run: Run) => void] {
    const [run, setRun] = useState<Run | null>(initial);
    const runId = run?.id;
    useEffect(() => (runId ? watcher.subscribe((update) => {
        if (update.id === runId) setRun(update);
    }) : undefined), [runId]);
    return [run, (started: Run) => {
        setRun(started);
        watcher.watch(started);
    }];
}

export function closeText(run: Run | null): string {
    return run && !isFinished(run) ? 'Close (the run goes on)' : 'Close';
}

export default function AnnotateDialog({
    task, job, watcher, onClose,
}: AnnotateDialogProps): JSX.Element {
    const objectLabels = task.labels.filter((label) => label.type !== 'tag').map((label) => label.name);
    const hasMomentLabel = task.labels.some((label) => label.name === MOMENT_LABEL);
    const [about, setAbout] = useState<About | null>(null);
    const [error, setError] = useState<string | null>(null);
    const [busy, setBusy] = useState(false);
    const [run, watch] = useWatchedRun(watcher, null);
    const [form, setForm] = useState<AnnotateForm>({
        prompt: '',
        label: objectLabels[0] ?? '',
        output: 'mask',
        createMomentLabel: !hasMomentLabel,
        range: job ? 'job' : 'task',
        from: null,
        to: null,
        options: {},
    });
    const update = (changes: Partial<AnnotateForm>): void => setForm({ ...form, ...changes });

    useEffect(() => {
        getAbout().then(setAbout, (reason: Error) => setError(reason.message));
    }, []);

    const fields = about ? optionFields(about.options) : [];

    const submit = async (): Promise<void> => {
        if (!about) return;
        const { body, error: problem } = annotateBody(form, {
            task: task.id,
            taskSize: task.size,
            taskLabels: objectLabels,
            job,
            fields,
            maxFrames: about.limits.max_frames,
            maxPromptChars: about.limits.max_prompt_chars,
        });
        if (problem !== null) {
            setError(problem);
            return;
        }
        setError(null);
        setBusy(true);
        try {
            watch(await startRun(body));
        } catch (reason) {
            setError((reason as Error).message);
        } finally {
            setBusy(false);
        }
    };

    const cancel = async (): Promise<void> => {
        if (!run) return;
        try {
            watch(await cancelRun(run.id));
        } catch (reason) {
            setError((reason as Error).message);
        }
    };

    const running = run !== null && !isFinished(run);
    return (
        <Modal
            open
            title='Annotate by text'
            className='momentseg-annotate-dialog'
            okText={run ? 'Cancel the run' : 'Annotate'}
            okButtonProps={{
                loading: busy,
                disabled: !run && !about,
                danger: run !== null,
                className: 'momentseg-annotate-submit',
                // a finished run has nothing left to cancel
                style: run && !running ? { display: 'none' } : undefined,
            }}
            onOk={run ? cancel : submit}
            cancelText={closeText(run)}
            onCancel={onClose}
            maskClosable={false}
            destroyOnClose
        >
            {run ? (
                <Space direction='vertical' style={{ width: '100%' }}>
                    <Typography.Text type='secondary'>{`“${run.prompt}” → ${run.label}`}</Typography.Text>
                    <RunProgress run={run} />
                </Space>
            ) : (
                <Space direction='vertical' style={{ width: '100%' }}>
                    <Typography.Text>What should MomentSeg find?</Typography.Text>
                    <Input.TextArea
                        className='momentseg-prompt'
                        autoFocus
                        rows={2}
                        maxLength={about?.limits.max_prompt_chars}
                        placeholder='e.g. the dog that jumps into the water'
                        value={form.prompt}
                        onChange={(event) => update({ prompt: event.target.value })}
                    />
                    <Space wrap>
                        <Typography.Text>Label</Typography.Text>
                        <Select
                            className='momentseg-label'
                            style={{ minWidth: 160 }}
                            value={form.label || undefined}
                            options={objectLabels.map((name) => ({ value: name, label: name }))}
                            onChange={(label: string) => update({ label })}
                        />
                        <Radio.Group
                            className='momentseg-output'
                            value={form.output}
                            onChange={(event) => update({ output: event.target.value })}
                        >
                            <Radio.Button value='mask'>Masks</Radio.Button>
                            <Radio.Button value='polygon'>Polygons</Radio.Button>
                        </Radio.Group>
                    </Space>
                    <Typography.Text>Frames</Typography.Text>
                    <Radio.Group
                        className='momentseg-range'
                        value={form.range}
                        onChange={(event) => update({ range: event.target.value })}
                    >
                        <Space direction='vertical'>
                            {rangeChoices(task.size, job).map((choice) => (
                                <Radio key={choice.value} value={choice.value}>{choice.label}</Radio>
                            ))}
                        </Space>
                    </Radio.Group>
                    {form.range === 'range' && (
                        <Space>
                            <InputNumber
                                className='momentseg-range-from'
                                min={0}
                                max={task.size === null ? undefined : task.size - 1}
                                value={form.from}
                                onChange={(from) => update({ from: from ?? null })}
                            />
                            <Typography.Text>to</Typography.Text>
                            <InputNumber
                                className='momentseg-range-to'
                                min={0}
                                max={task.size === null ? undefined : task.size - 1}
                                value={form.to}
                                onChange={(to) => update({ to: to ?? null })}
                            />
                        </Space>
                    )}
                    {hasMomentLabel ? (
                        <Typography.Text type='secondary'>
                            {`The moment's frames are tagged “${MOMENT_LABEL}”.`}
                        </Typography.Text>
                    ) : (
                        <Checkbox
                            className='momentseg-create-moment-label'
                            checked={form.createMomentLabel}
                            onChange={(event) => update({ createMomentLabel: event.target.checked })}
                        >
                            {`Add a “${MOMENT_LABEL}” tag label to the task to mark the moment's frames`}
                        </Checkbox>
                    )}
                    {fields.length > 0 && (
                        <OptionsPanel
                            fields={fields}
                            values={form.options}
                            onChange={(options) => update({ options })}
                        />
                    )}
                </Space>
            )}
            {error && <Alert className='momentseg-error' type='error' showIcon message={error} style={{ marginTop: 8 }} />}
        </Modal>
    );
}
