// Prints the addon's C++ sources (everything under native/ but cuda/) for binding.gyp, one per line.
const fs = require('node:fs');
const path = require('node:path');

const root = __dirname;
const out = [];
function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'cuda') walk(full);
    } else if (entry.name.endsWith('.cc')) {
      out.push(path.relative(path.dirname(root), full).split(path.sep).join('/'));
    }
  }
}
walk(root);
process.stdout.write(out.join('\n') + '\n');
