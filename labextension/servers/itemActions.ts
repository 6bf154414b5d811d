import * as React from 'react';

/** What `useItemActions` gives a list: which items are busy, their errors, and `run`. */
export interface IItemActions<T> {
  pending: ReadonlySet<string>;
  errors: Readonly<Record<string, string>>;
  /** Act on an item (ignored while it is still busy); a rejection becomes its error. */
  run: (item: T) => void;
}

/**
 * One action per item of a list (shut a kernel down, end a terminal): the item is busy
 * until the action settles, and a failure is kept under the item, described by `describe`.
 * Nothing is set after the list unmounts.
 */
export function useItemActions<T>(
  keyOf: (item: T) => string,
  action: (item: T) => Promise<void>,
  describe: (error: unknown) => string
): IItemActions<T> {
  const [pending, setPending] = React.useState<ReadonlySet<string>>(new Set());
  const [errors, setErrors] = React.useState<Readonly<Record<string, string>>>(
    {}
  );
  const mounted = React.useRef(true);
  React.useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const run = (item: T) => {
    const key = keyOf(item);
    if (pending.has(key)) {
      return;
    }
    setPending(current => new Set(current).add(key));
    setErrors(({ [key]: _, ...rest }) => rest);
    action(item)
      .catch(error => {
        if (mounted.current) {
          setErrors(current => ({ ...current, [key]: describe(error) }));
        }
      })
      .finally(() => {
        if (mounted.current) {
          setPending(current => {
            const next = new Set(current);
            next.delete(key);
            return next;
          });
        }
      });
  };
  return { pending, errors, run };
}
