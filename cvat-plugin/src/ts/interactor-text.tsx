// The text box under AI Tools → Interactors: what the MomentSeg text interactor is asked to find.

import React, { useState } from '@modules/react';
import Input from '@modules/antd/lib/input';
import Typography from '@modules/antd/lib/typography';

import type { MLModel } from './cvat';
import { isTextInteractor } from './lambda';

// read by the lambda.call hook when the interactor is called
export const interactorText = { value: '' };

interface Props {
    targetState?: { activeInteractor?: MLModel | null };
}

export default function InteractorText({ targetState }: Props): JSX.Element | null {
    const [text, setText] = useState(interactorText.value);
    const model = targetState?.activeInteractor;
    if (!model || !isTextInteractor(model)) return null;
    return (
        <div className='momentseg-interactor-text' style={{ marginTop: 8 }}>
            <Typography.Text>Find by text (one frame)</Typography.Text>
            <Input
                placeholder='e.g. the red cup on the left'
                value={text}
                onChange={(event) => {
                    interactorText.value = event.target.value;
                    setText(event.target.value);
                }}
            />
            <Typography.Text type='secondary'>Then click once on the frame to run it.</Typography.Text>
        </div>
    );
}
