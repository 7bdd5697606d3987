// "MomentSeg runs": every run of the task, newest first, with progress, result and cancel.

import React, { useEffect, useState } from '@modules/react';
import Modal from '@modules/antd/lib/modal';
import Table from '@modules/antd/lib/table';
import Button from '@modules/antd/lib/button';
import Alert from '@modules/antd/lib/alert';

import type { Run } from './api';
import { isFinished } from './progress';
import RunProgress from './run-progress';
import { cancelRun, listRuns } from './service';
import type { RunWatcher } from './watcher';

export const RUNS_REFRESH_MS = 3000;

interface Props {
    task: number;
    watcher: RunWatcher;
    // reloads the open job's annotations (asking first about unsaved changes); null outside a job
    onLoad: (() => void) | null;
    onClose: () => void;
}

export default function RunsView({
    task, watcher, onLoad, onClose,
}: Props): JSX.Element {
    const [runs, setRuns] = useState<Run[] | null>(null);
    const [error, setError] = useState<string | null>(null);

    useEffect(() => {
        let live = true;
        const refresh = (): void => {
            listRuns(task).then((list) => {
                if (!live) return;
                setRuns(list);
                setError(null);
            }, (reason: Error) => live && setError(reason.message));
        };
        refresh();
        const timer = window.setInterval(refresh, RUNS_REFRESH_MS);
        return () => {
            live = false;
            window.clearInterval(timer);
        };
    }, [task]);

    const cancel = async (run: Run): Promise<void> => {
        try {
            watcher.watch(await cancelRun(run.id));
        } catch (reason) {
            setError((reason as Error).message);
        }
    };

    return (
        <Modal
            open
            width={900}
            title={`MomentSeg runs of task ${task}`}
            className='momentseg-runs-view'
            footer={null}
            onCancel={onClose}
        >
            {error && <Alert className='momentseg-error' type='error' showIcon message={error} />}
            {onLoad && (
                <Button className='momentseg-load-results' onClick={onLoad} style={{ marginBottom: 8 }}>
                    Load finished runs into this job
                </Button>
            )}
            <Table<Run>
                size='small'
                rowKey='id'
                loading={runs === null && !error}
                dataSource={runs ?? []}
                pagination={{ pageSize: 8 }}
                locale={{ emptyText: 'No MomentSeg runs on this task yet.' }}
                columns={[
                    { title: 'Sentence', dataIndex: 'prompt', width: 220 },
                    { title: 'Label', dataIndex: 'label' },
                    { title: 'By', dataIndex: 'user' },
                    {
                        title: 'Started',
                        dataIndex: 'created',
                        render: (created: string) => new Date(created).toLocaleString(),
                    },
                    {
                        title: 'Progress',
                        width: 300,
                        render: (_: unknown, run: Run) => <RunProgress run={run} />,
                    },
                    {
                        title: '',
                        render: (_: unknown, run: Run) => (isFinished(run) ? null : (
                            <Button size='small' danger onClick={() => cancel(run)}>Cancel</Button>
                        )),
                    },
                ]}
            />
        </Modal>
    );
}
