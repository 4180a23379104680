// `npm run dev` serves the UI with hot reload and forwards /api to a running
// gateway (GATEWAY_URL, default http://127.0.0.1:3000). `npm run build`
// writes plain static files; build.sh passes --outDir.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    target: "es2022",
    // Small app: one JS and one CSS file are fine; no source maps shipped.
    sourcemap: false,
  },
  server: {
    proxy: { "/api": process.env.GATEWAY_URL ?? "http://127.0.0.1:3000" },
  },
});
