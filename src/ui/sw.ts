// The service worker: precaches the app and the embedded model (the list is injected at build time by
// vite-plugin-pwa), so the page and stories260K work offline after the first visit.
// Update flow: see the message listener below.
// Range requests: a precached file read with HTTP Range requests (src/model/source.ts insists on 206 answers) gets
// its slice from the RangeRequestsPlugin; the page itself fetches the embedded model whole (see embeddedSpec).

/// <reference lib="webworker" />
import { RangeRequestsPlugin } from 'workbox-range-requests';
import { addPlugins, cleanupOutdatedCaches, precacheAndRoute } from 'workbox-precaching';
import type { PrecacheEntry } from 'workbox-precaching';

declare let self: ServiceWorkerGlobalScope & { __WB_MANIFEST: (string | PrecacheEntry)[] };

addPlugins([new RangeRequestsPlugin()]);
precacheAndRoute(self.__WB_MANIFEST);
cleanupOutdatedCaches();

// A new version waits until the page's "Reload to update" button asks it to take over (src/ui/update.ts), so a
// reply in progress is never cut off by a reload. The first install has nothing to wait for and claims the page.
self.addEventListener('message', (event) => {
  if (event.data && event.data.type === 'SKIP_WAITING') void self.skipWaiting();
});
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
