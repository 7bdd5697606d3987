// Dialogs opened from menu items live in their own React root (a menu item is a plain function, so it
// cannot render), sharing CVAT's React and antd.

import React from '@modules/react';
import { createRoot } from '@modules/react-dom/client';

export type Close = () => void;

export function openDialog(render: (close: Close) => JSX.Element): Close {
    const container = document.createElement('div');
    document.body.appendChild(container);
    const root = createRoot(container);
    const close: Close = () => {
        root.unmount();
        container.remove();
    };
    root.render(<>{render(close)}</>);
    return close;
}
