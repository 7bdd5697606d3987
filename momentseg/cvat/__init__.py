"""CVAT adapters: connecting with cvat-sdk, reading a task's frames, writing tracks and intervals back."""
