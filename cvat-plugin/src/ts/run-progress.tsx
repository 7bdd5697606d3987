// One run's progress and result, as the dialogs and the runs view show it.

import React from '@modules/react';
import Progress from '@modules/antd/lib/progress';
import Typography from '@modules/antd/lib/typography';

import type { Run } from './api';
import { describeRun } from './progress';

const PROGRESS_STATUS = {
    active: 'active', success: 'success', error: 'exception', normal: 'normal',
} as const;

export default function RunProgress({ run }: { run: Run }): JSX.Element {
    const view = describeRun(run);
    return (
        <div className='momentseg-run-progress' data-state={run.state}>
            <Typography.Text strong className='momentseg-run-title'>{view.title}</Typography.Text>
            <Progress percent={view.percent} status={PROGRESS_STATUS[view.tone]} size='small' />
            {view.details.map((line) => (
                <Typography.Paragraph
                    key={line}
                    className='momentseg-run-detail'
                    type={view.tone === 'error' ? 'danger' : undefined}
                    style={{ marginBottom: 4 }}
                >
                    {line}
                </Typography.Paragraph>
            ))}
        </div>
    );
}
