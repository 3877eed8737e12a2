/**
 * The promise under way for key, or start()'s when none is: callers who ask at once share one
 * lookup, creation or fetch, and the next caller after it settles starts a new one.
 */
export function singleFlight<K, T>(underWay: Map<K, Promise<T>>, key: K, start: () => Promise<T>): Promise<T> {
  let pending = underWay.get(key);
  if (!pending) {
    pending = start().finally(() => underWay.delete(key));
    underWay.set(key, pending);
  }
  return pending;
}
