// Prints 1 when Gloo's headers and library are installed (Debian's libgloo-dev), else 0, for binding.gyp.
// PUZZLE_LLAMA_GLOO=0 builds without it even where it is installed.
const fs = require('node:fs');

const dirs = ['/usr/include', '/usr/local/include'];
const libs = ['/usr/lib', '/usr/local/lib', '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu'];
const off = process.env.PUZZLE_LLAMA_GLOO === '0';
const header = dirs.some((d) => fs.existsSync(`${d}/gloo/allreduce.h`) && fs.existsSync(`${d}/gloo/transport/tcp/device.h`));
const library = libs.some((d) => fs.existsSync(`${d}/libgloo.so`));
process.stdout.write(!off && header && library ? '1' : '0');
