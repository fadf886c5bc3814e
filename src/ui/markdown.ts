// Markdown for chat messages: marked turns the text into HTML and DOMPurify removes everything that could run code
// or load things (scripts, event handlers, javascript: URLs, iframes, forms, images). The model's text is
// untrusted — a conversation can be steered into printing HTML — so nothing reaches innerHTML without this.
// Not here: syntax highlighting or math.

import DOMPurify from 'dompurify';
import { Marked } from 'marked';

const marked = new Marked({ gfm: true, breaks: true, async: false });

// Images and media would fetch from anywhere (a tracking pixel leaks that a chat happened); links open elsewhere.
const FORBID_TAGS = ['img', 'picture', 'source', 'video', 'audio', 'iframe', 'object', 'embed', 'form', 'input', 'button', 'style', 'svg', 'math'];

let hooked = false;
function addHooks(): void {
  if (hooked) return;
  hooked = true;
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node instanceof HTMLAnchorElement) {
      node.target = '_blank';
      node.rel = 'noopener noreferrer nofollow';
    }
  });
}

/** Safe HTML for a message's markdown. */
export function renderMarkdown(text: string): string {
  addHooks();
  const html = marked.parse(text) as string;
  return DOMPurify.sanitize(html, { FORBID_TAGS, FORBID_ATTR: ['style'], ALLOW_DATA_ATTR: false });
}
