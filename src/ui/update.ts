// Service worker registration (production builds only) and the "new version ready" prompt: a new worker waits
// until the user clicks Reload, then takes over and the page reloads once. Uses workbox-window.
// Not here: what the worker caches (sw.ts).

import { Workbox } from 'workbox-window';
import { byId } from './dom';

export function registerServiceWorker(): void {
  // MODE, not PROD: a build made under Vitest (NODE_ENV=test) has PROD false but still ships its service worker;
  // the dev server (mode 'development') has no worker to register.
  if (import.meta.env.MODE === 'development' || !('serviceWorker' in navigator)) return;
  const wb = new Workbox('./sw.js');
  const banner = byId('update-banner', HTMLElement);
  byId('update-reload', HTMLButtonElement).addEventListener('click', () => {
    wb.addEventListener('controlling', () => location.reload());
    wb.messageSkipWaiting();
  });
  wb.addEventListener('waiting', () => {
    banner.hidden = false;
  });
  void wb.register().catch((e: unknown) => console.warn('service worker registration failed', e));
}
