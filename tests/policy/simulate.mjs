// Evaluates IAM simulations with @cloud-copilot/iam-simulate: a JSON array of simulations on stdin, a JSON array of
// results on stdout (same order). Strict mode: the request context is exactly what the case supplies.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const simulations = JSON.parse(Buffer.concat(chunks).toString('utf8'))

const results = []
for (const simulation of simulations) {
  const response = await runSimulation(simulation, { simulationMode: 'Strict' })
  if (response.resultType === 'error') {
    results.push({ result: 'Error', error: response.errors.message, details: response.errors, ignored: [] })
    continue
  }
  const single = response.resultType === 'single' ? [response.result] : response.results
  const ignored = [...new Set(single.flatMap((r) => r.ignoredContextKeys ?? []))]
  results.push({ result: response.overallResult, resultType: response.resultType, ignored, count: single.length })
}
process.stdout.write(JSON.stringify(results))
