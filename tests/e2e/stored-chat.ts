// Test helper: put a conversation record straight into the app's IndexedDB store, laid out as idb-keyval keeps it
// (src/storage/conversations.ts), so a test can open the page on a conversation it chose. Not a storage API.

import type { Page } from 'playwright-core';

export async function putConversation(page: Page, record: { id: string } & Record<string, unknown>): Promise<void> {
  await page.evaluate(
    (rec) =>
      new Promise<void>((resolve, reject) => {
        const open = indexedDB.open('flock-conversations');
        open.onupgradeneeded = () => open.result.createObjectStore('conversations');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction('conversations', 'readwrite');
          tx.objectStore('conversations').put(rec, rec.id);
          tx.oncomplete = () => {
            open.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    record,
  );
}
