// Copy the pinned STOMP client bundles from node_modules into static/vendor/ (committed,
// served by the gateway; no CDN, no build step). Run after changing a version in
// package.json:   cd tests/e2e && npm install && npm run vendor
// tests/e2e/test_vendor.py checks that the committed copies match node_modules.
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, '..', '..', 'static', 'vendor');

// [npm package, files to copy, directory prefix under static/vendor/]
export const BUNDLES = [
  ['@stomp/stompjs', ['bundles/stomp.umd.min.js', 'LICENSE'], 'stompjs'],
  ['stompjs', ['lib/stomp.min.js', 'LICENSE.txt'], 'stompjs'],
];

for (const [pkg, files, prefix] of BUNDLES) {
  const root = join(here, 'node_modules', pkg);
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const target = join(vendor, `${prefix}-${version}`);
  // Drop older copies of the same major line (stompjs-7.* for @stomp/stompjs 7.x ...).
  const major = version.split('.')[0];
  for (const old of readdirSync(vendor, { withFileTypes: true })) {
    if (old.isDirectory() && old.name.startsWith(`${prefix}-${major}.`) && old.name !== `${prefix}-${version}`) {
      rmSync(join(vendor, old.name), { recursive: true });
    }
  }
  mkdirSync(target, { recursive: true });
  for (const file of files) {
    copyFileSync(join(root, file), join(target, file.split('/').pop()));
  }
  console.log(`${pkg}@${version} -> static/vendor/${prefix}-${version}/`);
}
