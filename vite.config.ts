// Build and dev-server settings for the page. `base: './'` makes the build work from any path (GitHub Pages, a
// subfolder, file servers); servers listen on 127.0.0.1 only (WebGPU needs a secure context: localhost is one).
// The service worker (src/ui/sw.ts) precaches the app, the engine worker and the embedded model so Flock works
// offline; the engine runs in a module worker (src/worker/engine.worker.ts).
import { defineConfig } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // Error classes carry literal names (src/worker/errors.ts rebuilds them by name across the worker boundary);
    // keeping class names also keeps stack traces and console output readable.
    rolldownOptions: { output: { keepNames: true } },
  },
  server: { host: '127.0.0.1', port: 5173 },
  preview: { host: '127.0.0.1', port: 4173 },
  worker: { format: 'es', rolldownOptions: { output: { keepNames: true } } },
  plugins: [
    VitePWA({
      strategies: 'injectManifest',
      srcDir: 'src/ui',
      filename: 'sw.ts',
      // src/ui/update.ts registers the worker with workbox-window and shows an update prompt
      registerType: 'prompt',
      injectRegister: false,
      // globPatterns below already list the icons; adding them again would only duplicate precache entries
      includeManifestIcons: false,
      manifest: {
        name: 'Flock',
        short_name: 'Flock',
        description: 'Private LLM chat that runs on this device with WebGPU.',
        theme_color: '#2563eb',
        background_color: '#ffffff',
        display: 'standalone',
        start_url: './',
        scope: './',
        icons: [
          { src: 'icon-192.png', sizes: '192x192', type: 'image/png' },
          { src: 'icon-512.png', sizes: '512x512', type: 'image/png' },
          { src: 'icon-maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
          { src: 'icon.svg', sizes: 'any', type: 'image/svg+xml' },
        ],
      },
      injectManifest: {
        // the embedded model (1.2 MB) is precached with the app; the LICENSE next to it is not needed offline
        globPatterns: ['**/*.{js,css,html,svg,png,webmanifest,gguf}'],
        maximumFileSizeToCacheInBytes: 4 * 1024 * 1024,
      },
    }),
  ],
});
