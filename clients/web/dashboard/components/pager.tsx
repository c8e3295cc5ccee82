/** Previous / next over page tokens: the tokens of the pages seen so far are kept to go back. */
export function Pager({ tokens, nextToken, onChange, label }: { tokens: string[]; nextToken: string; onChange(tokens: string[]): void; label: string }) {
  return (
    <nav className="pager" aria-label={label}>
      <button type="button" disabled={tokens.length === 0} onClick={() => onChange(tokens.slice(0, -1))}>Previous page</button>
      <span>page {tokens.length + 1}</span>
      <button type="button" disabled={!nextToken} onClick={() => onChange([...tokens, nextToken])}>Next page</button>
    </nav>
  );
}
