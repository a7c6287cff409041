import { defineConfig } from 'vite';

// The build goes into the Python package, which serves it at "/" (src/signalroom/web/ui.py).
// `npm run dev` proxies the APIs to a signalroom on SIGNALROOM_URL (default :8290).
const backend = process.env.SIGNALROOM_URL ?? 'http://127.0.0.1:8290';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic' },
  build: {
    outDir: '../src/signalroom/web/static',
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 1500,
    sourcemap: false,
  },
  server: {
    proxy: {
      '/api': backend,
      '/loki': backend,
    },
  },
});
