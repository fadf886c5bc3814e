// The service worker: precaches the app and the embedded model (the list is injected at build time by
// vite-plugin-pwa), so the page and stories260K work offline after the first visit.
// Range requests: the model is read with HTTP Range requests (src/model/source.ts insists on 206 answers), and
// workbox's precache route answers with whole files unless the RangeRequestsPlugin slices the cached response.

/// <reference lib="webworker" />
import { RangeRequestsPlugin } from 'workbox-range-requests';
import { addPlugins, cleanupOutdatedCaches, precacheAndRoute } from 'workbox-precaching';
import type { PrecacheEntry } from 'workbox-precaching';

declare let self: ServiceWorkerGlobalScope & { __WB_MANIFEST: (string | PrecacheEntry)[] };

addPlugins([new RangeRequestsPlugin()]);
precacheAndRoute(self.__WB_MANIFEST);
cleanupOutdatedCaches();

// A new version takes over at once: the page holds no state the old worker must keep serving.
self.addEventListener('install', () => void self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
