// The moment on the player's slider: a band over the moment's frames and marks at the keyframes and
// c* for the runs of this job's task; clicking one jumps to its frame.

import React, { useEffect, useState } from '@modules/react';

import type { Run } from './api';
import { momentText, runsWithMoments } from './progress';
import { listRuns } from './service';
import { bandClickFrame, momentGeometry } from './timeline';
import type { RunWatcher } from './watcher';

export const BAND_REFRESH_MS = 10000;
// the newest runs drawn, one lane each, stacked just above the slider's rail (below it is the file name)
const MAX_LANES = 3;
// cvat-ui draws its player slider 350px wide (.cvat-player-slider)
const SLIDER_WIDTH_PX = 350;
const LANE_HEIGHT_PX = 4;

interface SliderProps {
    startFrame: number;
    stopFrame: number;
    onSliderChange?: (frame: number) => void;
}

interface Props {
    targetProps: SliderProps;
    taskId: number | null;
    watcher: RunWatcher;
    jump: (frame: number) => void;
}

function useTaskRuns(taskId: number | null, watcher: RunWatcher): Run[] {
    const [runs, setRuns] = useState<Run[]>([]);
    useEffect(() => {
        if (taskId === null) return undefined;
        let live = true;
        const refresh = (): void => {
            listRuns(taskId).then((list) => live && setRuns(list), () => undefined);
        };
        refresh();
        const timer = window.setInterval(refresh, BAND_REFRESH_MS);
        const unsubscribe = watcher.subscribe((run) => {
            if (run.task === taskId && run.state === 'done') refresh();
        });
        return () => {
            live = false;
            window.clearInterval(timer);
            unsubscribe();
        };
    }, [taskId]);
    return runs;
}

export default function MomentBand({
    targetProps, taskId, watcher, jump,
}: Props): JSX.Element | null {
    const runs = runsWithMoments(useTaskRuns(taskId, watcher)).slice(0, MAX_LANES);
    const { startFrame: first, stopFrame: last } = targetProps;
    if (!runs.length) return null;

    return (
        <div
            className='momentseg-timeline'
            style={{
                position: 'absolute',
                left: 0,
                top: -MAX_LANES * LANE_HEIGHT_PX - 1,
                width: SLIDER_WIDTH_PX,
                height: MAX_LANES * LANE_HEIGHT_PX,
            }}
        >
            {runs.map((run, lane) => {
                const result = run.result!;
                const { band, marks } = momentGeometry(result, first, last);
                const top = (MAX_LANES - 1 - lane) * LANE_HEIGHT_PX; // the newest run nearest the rail
                const title = `MomentSeg “${run.prompt}”: ${momentText(result.moment!)}`;
                return (
                    <React.Fragment key={run.id}>
                        {band && (
                            <div
                                className='momentseg-moment-band'
                                data-run={run.id}
                                data-start={band.start}
                                data-end={band.end}
                                title={title}
                                role='button'
                                onClick={(event) => {
                                    const box = event.currentTarget.parentElement!.getBoundingClientRect();
                                    jump(bandClickFrame(band, (event.clientX - box.left) / box.width, first, last));
                                }}
                                style={{
                                    position: 'absolute',
                                    top,
                                    height: LANE_HEIGHT_PX - 1,
                                    left: `${band.left}%`,
                                    width: `max(${band.width}%, 3px)`,
                                    background: 'rgba(250, 140, 22, 0.75)',
                                    borderRadius: 2,
                                    cursor: 'pointer',
                                }}
                            />
                        )}
                        {marks.map((mark) => (
                            <div
                                key={`${mark.kind}-${mark.frame}`}
                                className={`momentseg-mark momentseg-mark-${mark.kind}`}
                                data-frame={mark.frame}
                                title={`${mark.kind === 'center' ? 'c* (the moment\'s centre)' : 'Keyframe'}: frame ${mark.frame}`}
                                role='button'
                                onClick={() => jump(mark.frame)}
                                style={{
                                    position: 'absolute',
                                    top: top - 1,
                                    height: LANE_HEIGHT_PX + 1,
                                    left: `calc(${mark.left}% - 1px)`,
                                    width: mark.kind === 'center' ? 3 : 2,
                                    background: mark.kind === 'center' ? '#cf1322' : '#0958d9',
                                    cursor: 'pointer',
                                }}
                            />
                        ))}
                    </React.Fragment>
                );
            })}
        </div>
    );
}
