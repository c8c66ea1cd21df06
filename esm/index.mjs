// ESM entry: the CommonJS build's named exports (Node detects them), plus the whole module as
// the default export. Types: dist/lib/index.d.ts. test/packed-install.test.ts checks the two match.
export * from '../dist/lib/index.js'
import edpo from '../dist/lib/index.js'
export default edpo
