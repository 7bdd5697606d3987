// "Refine by text": re-runs the selected MomentSeg object with the person's saved edits as anchors.

import React, { useState } from '@modules/react';
import Modal from '@modules/antd/lib/modal';
import Input from '@modules/antd/lib/input';
import Alert from '@modules/antd/lib/alert';
import Space from '@modules/antd/lib/space';
import Typography from '@modules/antd/lib/typography';

import { useWatchedRun, closeText } from './annotate-dialog';
import type { Job } from './cvat';
import { isFinished } from './progress';
import { refineBody } from './refine';
import RunProgress from './run-progress';
import { startRun } from './service';
import type { RunWatcher } from './watcher';

interface Props {
    job: Job;
    object: number;
    watcher: RunWatcher;
    onClose: () => void;
}

export default function RefineDialog({
    job, object, watcher, onClose,
}: Props): JSX.Element {
    const [prompt, setPrompt] = useState('');
    const [error, setError] = useState<string | null>(null);
    const [busy, setBusy] = useState(false);
    const [run, watch] = useWatchedRun(watcher, null);

    const submit = async (): Promise<void> => {
        setBusy(true);
        setError(null);
        try {
            // the service reads the person's edits from CVAT, so they are saved first (never dropped)
            if (job.annotations.hasUnsavedChanges()) await job.annotations.save();
            watch(await startRun(refineBody(job.taskId, object, prompt, {})));
        } catch (reason) {
            setError((reason as Error).message);
        } finally {
            setBusy(false);
        }
    };

    return (
        <Modal
            open
            title={`Refine by text: object ${object}`}
            className='momentseg-refine-dialog'
            okText='Refine'
            okButtonProps={{
                loading: busy,
                className: 'momentseg-refine-submit',
                style: run ? { display: 'none' } : undefined, // one refine per dialog; its progress shows
            }}
            onOk={submit}
            cancelText={closeText(run)}
            onCancel={onClose}
            maskClosable={false}
        >
            {run ? <RunProgress run={run} /> : (
                <Space direction='vertical' style={{ width: '100%' }}>
                    <Typography.Paragraph>
                        MomentSeg runs this object again and keeps every frame you edited as it is: your
                        edits become anchors the masks are propagated from. Unsaved changes are saved first.
                    </Typography.Paragraph>
                    <Input
                        className='momentseg-refine-prompt'
                        placeholder='A new sentence (leave empty to keep the object’s own)'
                        value={prompt}
                        onChange={(event) => setPrompt(event.target.value)}
                    />
                </Space>
            )}
            {run && isFinished(run) && run.state === 'done' && (
                <Typography.Text type='secondary'>The job reloads with the refined object.</Typography.Text>
            )}
            {error && <Alert className='momentseg-error' type='error' showIcon message={error} style={{ marginTop: 8 }} />}
        </Modal>
    );
}
