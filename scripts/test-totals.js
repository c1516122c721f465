// Prints the one closing line CI reads: the totals over every suite that ran
// (jest on each Node, busted, and each static check counted as one test). Exit 1 on any failure.
const fs = require('node:fs');
const path = require('node:path');

const dir = process.argv[2];
let passed = 0;
let failed = 0;
let skipped = 0;

for (const file of fs.readdirSync(dir)) {
  const full = path.join(dir, file);
  if (file.endsWith('.check')) {
    if (fs.readFileSync(full, 'utf8').trim() === 'ok') passed++;
    else failed++;
  }
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  } catch {
    return undefined;
  }
}

const busted = readJson('busted.json');
if (busted) {
  passed += busted.successes.length;
  failed += busted.failures.length + busted.errors.length;
  skipped += busted.pendings.length;
} else {
  console.log('busted: no results');
  failed++;
}

// jest.json, and one more file per other Node the suite ran on (jest-node24.json).
const jestRuns = ['jest.json', ...fs.readdirSync(dir).filter((f) => /^jest-.+\.json$/.test(f))];
for (const file of jestRuns) {
  const jest = readJson(file);
  if (jest) {
    passed += jest.numPassedTests;
    failed += jest.numFailedTests;
    skipped += jest.numPendingTests + jest.numTodoTests;
    // A suite that failed to run (syntax error, crash in beforeAll) has no failed test of its own.
    failed += jest.testResults.filter((s) => s.status === 'failed' && s.assertionResults.every((a) => a.status !== 'failed')).length;
  } else {
    console.log(`${file}: no results`);
    failed++;
  }
}

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
