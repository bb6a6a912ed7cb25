// plotly.js with only the trace types in traces.json, built with the esbuild settings of
// plotly.js's own bundles (its esbuild-config.js). The first line names the version and the
// traces: embedscope/dashboard/plotly_bundle.py reads it. Beside it, the same gzipped (served
// to browsers that accept gzip, with nothing compressed at the server's start).
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const esbuild = require('esbuild');
const { environmentPlugin } = require('esbuild-plugin-environment');
const { glsl } = require('esbuild-plugin-glsl');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');

const out = process.argv[2];
const traces = JSON.parse(fs.readFileSync(path.join(__dirname, 'traces.json'), 'utf8'));
const version = require('plotly.js/package.json').version;
const entry = "var Plotly = require('plotly.js/lib/core');\n" +
    'Plotly.register([' + traces.filter((t) => t !== 'scatter').map((t) => `require('plotly.js/lib/${t}')`).join(', ') + ']);\n' +
    'module.exports = Plotly;\n';

esbuild.build({
    stdin: { contents: entry, resolveDir: __dirname, sourcefile: 'entry.js' },
    outfile: out,
    banner: { js: `/* plotly.js v${version} (MIT, Plotly, Inc.) | embedscope partial bundle | traces: ${traces.join(',')} */` },
    format: 'iife', globalName: 'Plotly', bundle: true, minify: true, sourcemap: false, legalComments: 'eof',
    plugins: [InlineCSSPlugin(), glsl({ minify: true }), environmentPlugin({ NODE_DEBUG: false })],
    alias: { regl: '@plotly/regl', stream: 'stream-browserify' },
    define: { global: 'window', 'define.amd': 'false' },
    target: 'es2016', logLevel: 'info',
}).then(() => fs.writeFileSync(`${out}.gz`, zlib.gzipSync(fs.readFileSync(out), { level: 9 })))
    .catch(() => process.exit(1));
