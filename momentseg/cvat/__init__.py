"""CVAT adapters: connecting with cvat-sdk, reading a task's frames by chunk, writing per-frame masks, polygon
tracks and moment tags back job by job, and reading a task's objects for export."""
