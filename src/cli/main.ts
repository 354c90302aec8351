/** Entry point of the `viommu` command; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  process.stdout.write(`viommu: ${argv.join(' ')}\n`);
  return 0;
}
