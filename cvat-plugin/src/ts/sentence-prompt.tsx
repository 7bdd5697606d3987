// Asks for the sentence when the MomentSeg function is picked in CVAT's "Automatic annotation".

import React, { useState } from '@modules/react';
import Modal from '@modules/antd/lib/modal';
import Input from '@modules/antd/lib/input';
import Typography from '@modules/antd/lib/typography';

import { openDialog } from './mount';

function SentencePrompt({ cleanup, onDone }: { cleanup: boolean; onDone: (sentence: string | null) => void }): JSX.Element {
    const [sentence, setSentence] = useState('');
    return (
        <Modal
            open
            title='MomentSeg: what should it find?'
            className='momentseg-sentence-prompt'
            okText='Annotate the whole video'
            okButtonProps={{ disabled: !sentence.trim() }}
            onOk={() => onDone(sentence)}
            onCancel={() => onDone(null)}
        >
            <Input.TextArea
                autoFocus
                rows={2}
                placeholder='e.g. the dog that jumps into the water'
                value={sentence}
                onChange={(event) => setSentence(event.target.value)}
            />
            <Typography.Paragraph type='secondary' style={{ marginTop: 8 }}>
                MomentSeg finds the object across the whole video and marks the moment the sentence describes.
                {cleanup && ' It never deletes existing annotations, so “Clean old annotations” is not applied.'}
            </Typography.Paragraph>
        </Modal>
    );
}

/** The sentence typed, or null when the person closed the dialog. */
export function askSentence(cleanup: boolean): Promise<string | null> {
    return new Promise((resolve) => {
        openDialog((done) => (
            <SentencePrompt
                cleanup={cleanup}
                onDone={(sentence) => {
                    done();
                    resolve(sentence);
                }}
            />
        ));
    });
}
