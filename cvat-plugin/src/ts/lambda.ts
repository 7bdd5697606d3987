// CVAT's own model calls that the plugin takes over: the MomentSeg function in "Automatic annotation"
// (lambda.run) becomes a whole-video run, and the text interactor (lambda.call) gets the person's text.

import type { AnnotateBody, Run } from './api';

// Nuclio function names (metadata.name in function.yaml and serverless/interactor/function.yaml)
export const MOMENTSEG_FUNCTION = 'momentseg';
export const TEXT_INTERACTOR_FUNCTION = 'momentseg-interactor';

// Run ids handed to CVAT's inference list carry this prefix, so the plugin's lambda.listen/cancel
// hooks know them from CVAT's own request ids.
export const REQUEST_PREFIX = 'momentseg:';

interface ModelLike {
    id: string;
}

export const isMomentSegFunction = (model: ModelLike): boolean => model.id === MOMENTSEG_FUNCTION;
export const isTextInteractor = (model: ModelLike): boolean => model.id === TEXT_INTERACTOR_FUNCTION;

/**
 * The arguments CVAT's server forwards to the text interactor: the person's text as `text_prompts`
 * and no points (CVAT requires the point lists to be present; the interactor segments from text alone).
 */
export function textInteractorArgs(text: string): { text_prompts: string[]; pos_points: []; neg_points: []; obj_bbox: [] } {
    return {
        text_prompts: [text.trim()], pos_points: [], neg_points: [], obj_bbox: [],
    };
}

/** The body CVAT's "Automatic annotation" dialog sends to lambda.run for a detector. */
export interface AutoAnnotationArgs {
    mapping?: Record<string, { name: string }>;
    cleanup?: boolean;
    conv_mask_to_poly?: boolean;
}

/**
 * The whole-video run for CVAT's "Automatic annotation" with the MomentSeg function: the task label the
 * person mapped the function's label to, masks or polygons as they chose, every frame of the task.
 */
export function annotateBodyFromAutoAnnotation(
    task: number,
    args: AutoAnnotationArgs,
    prompt: string,
): { body: AnnotateBody; error: null } | { body: null; error: string } {
    const targets = Object.values(args.mapping ?? {}).map((target) => target.name).filter(Boolean);
    if (!targets.length) {
        return { body: null, error: 'Map the function\'s label to one of the task\'s labels.' };
    }
    return {
        body: {
            kind: 'annotate',
            task,
            job: null,
            frames: null,
            prompt: prompt.trim(),
            label: targets[0],
            output: args.conv_mask_to_poly ? 'polygon' : 'mask',
            create_moment_label: false,
            options: {},
        },
        error: null,
    };
}

// CVAT's RQStatus values, which its inference list and progress bar understand
export type RQStatus = 'queued' | 'started' | 'finished' | 'failed' | 'unknown';

export function rqStatus(run: Run): RQStatus {
    switch (run.state) {
        case 'queued': return 'queued';
        case 'running': return 'started';
        case 'done': return 'finished';
        case 'failed':
        case 'cancelled': return 'failed';
        default: return 'unknown';
    }
}

/** The request object CVAT's inference list expects back from lambda.run, for one MomentSeg run. */
export function functionRequest(run: Run, functionId: string): {
    id: string; function: { id: string; task: number }; status: RQStatus; progress: number; exc_info: string | null;
} {
    return {
        id: `${REQUEST_PREFIX}${run.id}`,
        function: { id: functionId, task: run.task },
        status: rqStatus(run),
        progress: run.percent,
        exc_info: run.state === 'cancelled' ? 'Cancelled.' : run.error,
    };
}

/** The run id inside an id CVAT hands back to lambda.listen/cancel, or null for CVAT's own requests. */
export function runIdOfRequest(requestId: unknown): string | null {
    if (typeof requestId !== 'string' || !requestId.startsWith(REQUEST_PREFIX)) return null;
    return requestId.slice(REQUEST_PREFIX.length) || null;
}
