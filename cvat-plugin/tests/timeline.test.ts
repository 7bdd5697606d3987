import { describe, expect, it } from 'vitest';
import {
    bandClickFrame, frameAtFraction, momentGeometry, sliderPercent,
} from '../src/ts/timeline';
import { doneResult } from './fixtures';

describe('timeline geometry', () => {
    it('places frames the way the slider places its handle', () => {
        expect(sliderPercent(0, 0, 100)).toBe(0);
        expect(sliderPercent(100, 0, 100)).toBe(100);
        expect(sliderPercent(150, 100, 199)).toBeCloseTo(50.505, 2);
        expect(sliderPercent(5, 5, 5)).toBe(0);
    });

    it('the band covers the moment inside the job, marks at keyframes and c*', () => {
        const { band, marks } = momentGeometry(doneResult, 0, 99);
        expect(band).not.toBeNull();
        expect(band!.start).toBe(40);
        expect(band!.end).toBe(89);
        expect(band!.left).toBeCloseTo(40.404, 2);
        expect(band!.left + band!.width).toBeCloseTo(89.899, 2);
        expect(marks.map((m) => [m.frame, m.kind])).toEqual([
            [40, 'keyframe'], [52, 'keyframe'], [76, 'keyframe'], [89, 'keyframe'], [64, 'center'],
        ]);
    });

    it('clips to the job: a moment starting in an earlier job begins at the job\'s first frame', () => {
        const { band, marks } = momentGeometry(doneResult, 60, 120);
        expect(band!.start).toBe(60);
        expect(band!.left).toBe(0);
        expect(marks.map((m) => m.frame)).toEqual([76, 89, 64]);
    });

    it('draws nothing for a moment in another job', () => {
        const { band, marks } = momentGeometry(doneResult, 100, 199);
        expect(band).toBeNull();
        expect(marks).toEqual([]);
    });

    it('a click maps back to the frame under it, kept within the band', () => {
        expect(frameAtFraction(0.5, 0, 100)).toBe(50);
        expect(frameAtFraction(1.2, 0, 100)).toBe(100);
        const { band } = momentGeometry(doneResult, 0, 99);
        expect(bandClickFrame(band!, 0.404, 0, 99)).toBe(40);
        expect(bandClickFrame(band!, 0.2, 0, 99)).toBe(40);
        expect(bandClickFrame(band!, 0.6, 0, 99)).toBe(59);
        expect(bandClickFrame(band!, 0.99, 0, 99)).toBe(89);
    });
});
