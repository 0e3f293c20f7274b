// Vega-Lite specs to static SVG strings, in Node, without a canvas or a browser.
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

// The report is one offline file: every plot's data is inline, so any load
// Vega attempts is a bug and fails instead of fetching.
const offline: vega.Loader = {
  load: async (uri) => Promise.reject(new Error(`report plots must not load ${uri}`)),
  sanitize: async (uri) => Promise.reject(new Error(`report plots must not load ${uri}`)),
  http: async (uri) => Promise.reject(new Error(`report plots must not load ${uri}`)),
  file: async (uri) => Promise.reject(new Error(`report plots must not load ${uri}`)),
};

/**
 * The SVG of `spec`. Its element ids (clip paths, gradients) get the `id`
 * prefix because several SVGs inlined in one page share one id namespace,
 * and a repeated id would make one plot clip or fill with another's.
 */
export async function toSvg(spec: TopLevelSpec, id: string): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none', loader: offline });
  try {
    const svg = await view.toSVG();
    return svg
      .replace(/\sid="([^"]+)"/g, ` id="${id}-$1"`)
      .replace(/url\(#([^)]+)\)/g, `url(#${id}-$1)`)
      .replace(/href="#([^"]+)"/g, `href="#${id}-$1"`);
  } finally {
    view.finalize();
  }
}
