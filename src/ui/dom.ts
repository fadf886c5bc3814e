// Tiny DOM helpers for the page: find an element by id with its type checked, and build elements. No state.

export function byId<T extends HTMLElement>(id: string, type: new () => T, doc: Document = document): T {
  const el = doc.getElementById(id);
  if (!(el instanceof type)) throw new Error(`index.html is missing #${id} (${type.name})`);
  return el;
}

type Attrs = Record<string, string | boolean | undefined>;

/** h('button', {class: 'x', type: 'button'}, 'Label'): attributes are set as attributes; text children are text. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children);
  return el;
}

/** Offer `text` as a file download. */
export function saveFile(name: string, text: string, type = 'application/json'): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
