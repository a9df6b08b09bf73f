/**
 * The offline generator's bundled question bank: multiple-choice questions by subject, each with
 * its right answer, three wrong ones and a short explanation. Written for this project.
 */
import type { Difficulty } from '../events.ts';

export interface BankQuestion {
  question: string;
  correct: string;
  wrong: [string, string, string];
  explanation: string;
  difficulty: Difficulty;
}

export interface BankSubject {
  name: string;
  /** Words of a requested topic that point to this subject. */
  keywords: string[];
  questions: BankQuestion[];
}

export const QUESTION_BANK: readonly BankSubject[] = [
  {
    name: 'Python loops',
    keywords: ['python', 'loop', 'loops', 'for', 'while', 'iteration', 'iterate', 'range'],
    questions: [
      {
        question: 'What does `for i in range(3): print(i)` print?',
        correct: '0, 1 and 2, one per line',
        wrong: ['1, 2 and 3, one per line', '0, 1, 2 and 3, one per line', 'Only 3'],
        explanation: 'range(3) yields 0, 1 and 2; the stop value is excluded.',
        difficulty: 'easy',
      },
      {
        question: 'Which statement leaves the innermost loop at once?',
        correct: 'break',
        wrong: ['continue', 'pass', 'return None'],
        explanation: 'break ends the loop; continue only skips to the next iteration.',
        difficulty: 'easy',
      },
      {
        question: 'What does `continue` do inside a loop body?',
        correct: 'Skips the rest of the body and starts the next iteration',
        wrong: [
          'Ends the loop',
          'Restarts the loop from its first item',
          'Does nothing; it is a placeholder',
        ],
        explanation: 'continue jumps back to the loop header for the next item.',
        difficulty: 'easy',
      },
      {
        question: 'When does the `else` block of a `for` loop run?',
        correct: 'When the loop finishes without hitting break',
        wrong: [
          'When the iterable is empty only',
          'When an exception is raised in the loop',
          'Never; for loops have no else',
        ],
        explanation:
          'A loop else runs after normal completion, including zero iterations, but not after break.',
        difficulty: 'medium',
      },
      {
        question: 'Which call gives both the index and the item while looping over a list `xs`?',
        correct: 'enumerate(xs)',
        wrong: ['range(xs)', 'zip(xs)', 'xs.items()'],
        explanation: 'enumerate yields (index, item) pairs; lists have no items() method.',
        difficulty: 'medium',
      },
      {
        question: 'Starting from `n = 0`, the loop `while n < 10: n += 3` runs. What is `n` afterwards?',
        correct: '12',
        wrong: ['9', '10', '3'],
        explanation: 'n takes 3, 6, 9, then 12, at which point n < 10 is false.',
        difficulty: 'medium',
      },
      {
        question: 'Why can removing items from a list while iterating over it with `for x in xs` skip items?',
        correct: 'The loop advances an internal index while the removal shifts later items left',
        wrong: [
          'Python copies the list before the loop starts',
          'Removing raises RuntimeError immediately',
          'The loop iterates in reverse order',
        ],
        explanation:
          'The list iterator keeps a position; removing an item moves the next one into the current slot.',
        difficulty: 'hard',
      },
      {
        question: 'What does `[x * y for x in range(2) for y in range(3)]` evaluate to?',
        correct: '[0, 0, 0, 0, 1, 2]',
        wrong: ['[0, 1, 2, 0, 2, 4]', '[0, 0, 1, 2]', '[[0, 0, 0], [0, 1, 2]]'],
        explanation: 'The first for is the outer loop: x=0 gives three zeros, x=1 gives 0, 1, 2.',
        difficulty: 'hard',
      },
    ],
  },
  {
    name: 'Python basics',
    keywords: [
      'python',
      'basics',
      'basic',
      'variables',
      'types',
      'strings',
      'lists',
      'functions',
      'beginner',
    ],
    questions: [
      {
        question: 'Which type does `3 / 2` have in Python 3?',
        correct: 'float',
        wrong: ['int', 'decimal', 'fraction'],
        explanation: 'True division always returns a float; use // for floor division.',
        difficulty: 'easy',
      },
      {
        question: 'How do you start a comment in Python?',
        correct: '#',
        wrong: ['//', '--', '/*'],
        explanation: 'Everything after # on a line is a comment.',
        difficulty: 'easy',
      },
      {
        question: 'What does `len("hello")` return?',
        correct: '5',
        wrong: ['4', '6', '"hello"'],
        explanation: 'len counts the characters of a string.',
        difficulty: 'easy',
      },
      {
        question: 'Which of these values is immutable?',
        correct: 'A tuple',
        wrong: ['A list', 'A dict', 'A set'],
        explanation: 'Tuples cannot be changed after creation; lists, dicts and sets can.',
        difficulty: 'easy',
      },
      {
        question: 'What does `"a,b,c".split(",")` return?',
        correct: "['a', 'b', 'c']",
        wrong: ["('a', 'b', 'c')", "'abc'", "['a,b,c']"],
        explanation: 'split returns a list of the pieces between separators.',
        difficulty: 'medium',
      },
      {
        question: 'What is the value of `xs` after `xs = [1, 2]; ys = xs; ys.append(3)`?',
        correct: '[1, 2, 3]',
        wrong: ['[1, 2]', '[3]', 'It raises an error'],
        explanation: 'ys and xs name the same list object, so the append is seen through both.',
        difficulty: 'medium',
      },
      {
        question: 'Why is `def f(items=[]):` a common bug?',
        correct: 'The default list is created once and shared by every call',
        wrong: [
          'Default arguments cannot be lists',
          'The list is recreated but cannot be appended to',
          'It makes items a required argument',
        ],
        explanation:
          'Default values are evaluated when the function is defined; use None and create the list inside.',
        difficulty: 'hard',
      },
      {
        question: 'What does `{1, 2} | {2, 3}` evaluate to?',
        correct: '{1, 2, 3}',
        wrong: ['{2}', '{1, 3}', 'True'],
        explanation: 'On sets, | is the union.',
        difficulty: 'medium',
      },
    ],
  },
  {
    name: 'JavaScript',
    keywords: ['javascript', 'js', 'typescript', 'ts', 'node', 'nodejs', 'promise', 'async', 'web'],
    questions: [
      {
        question: 'Which keyword declares a block-scoped variable that cannot be reassigned?',
        correct: 'const',
        wrong: ['var', 'let', 'static'],
        explanation:
          'const bindings are block-scoped and cannot be reassigned (the object may still change).',
        difficulty: 'easy',
      },
      {
        question: 'What does `typeof null` return?',
        correct: '"object"',
        wrong: ['"null"', '"undefined"', '"number"'],
        explanation: 'A historical quirk of the language: typeof null is "object".',
        difficulty: 'easy',
      },
      {
        question: 'What is the result of `[1, 2, 3].map((x) => x * 2)`?',
        correct: '[2, 4, 6]',
        wrong: ['[1, 2, 3, 1, 2, 3]', '12', '[2, 4, 6, 8]'],
        explanation: 'map returns a new array with the callback applied to each element.',
        difficulty: 'easy',
      },
      {
        question: 'Which comparison does not convert types before comparing?',
        correct: '===',
        wrong: ['==', '<=', '!='],
        explanation: '=== and !== compare without coercion; == and != coerce.',
        difficulty: 'medium',
      },
      {
        question:
          'In what order do these print: `setTimeout(() => log("a")); Promise.resolve().then(() => log("b")); log("c")`?',
        correct: 'c, b, a',
        wrong: ['a, b, c', 'c, a, b', 'b, c, a'],
        explanation: 'Synchronous code first, then microtasks (promise callbacks), then timers.',
        difficulty: 'hard',
      },
      {
        question: 'What does `await` do inside an async function?',
        correct: 'Suspends the function until the promise settles, without blocking the thread',
        wrong: [
          'Blocks the whole process until the promise settles',
          'Starts a new thread',
          'Cancels the promise after a timeout',
        ],
        explanation: 'The function resumes in a later microtask; other work runs meanwhile.',
        difficulty: 'medium',
      },
      {
        question: 'What does `Promise.all` do when one of its promises rejects?',
        correct: 'It rejects at once with that reason',
        wrong: [
          'It waits for all and resolves with the successes',
          'It retries the rejected promise',
          'It resolves with undefined for that entry',
        ],
        explanation: 'Promise.all fails fast; Promise.allSettled waits for every outcome.',
        difficulty: 'hard',
      },
    ],
  },
  {
    name: 'SQL',
    keywords: [
      'sql',
      'database',
      'databases',
      'query',
      'queries',
      'postgres',
      'postgresql',
      'sqlite',
      'join',
      'joins',
    ],
    questions: [
      {
        question: 'Which clause filters rows before they are grouped?',
        correct: 'WHERE',
        wrong: ['HAVING', 'ORDER BY', 'LIMIT'],
        explanation: 'WHERE filters rows; HAVING filters groups after GROUP BY.',
        difficulty: 'easy',
      },
      {
        question: 'Which statement adds rows to a table?',
        correct: 'INSERT',
        wrong: ['UPDATE', 'ALTER', 'APPEND'],
        explanation: 'INSERT adds rows; UPDATE changes existing ones.',
        difficulty: 'easy',
      },
      {
        question: 'What does a LEFT JOIN keep that an INNER JOIN drops?',
        correct: 'Rows of the left table that have no match on the right',
        wrong: [
          'Rows of the right table without a match',
          'Duplicate rows',
          'Rows with NULL keys on both sides only',
        ],
        explanation: 'Unmatched left rows are kept with NULLs for the right table columns.',
        difficulty: 'medium',
      },
      {
        question: 'What does `COUNT(column)` skip that `COUNT(*)` counts?',
        correct: 'Rows where the column is NULL',
        wrong: ['Duplicate values', 'Rows with empty strings', 'Nothing; they are the same'],
        explanation: 'Aggregates over a column ignore NULLs; COUNT(*) counts rows.',
        difficulty: 'medium',
      },
      {
        question: 'Two transactions insert the same key into a UNIQUE column at the same time. What happens?',
        correct: 'One commits; the other waits for it and then fails with a unique violation',
        wrong: [
          'Both commit and the table holds the key twice',
          'Both fail',
          'The second silently overwrites the first',
        ],
        explanation:
          'The index enforces uniqueness across concurrent transactions, whatever the isolation level.',
        difficulty: 'hard',
      },
      {
        question: 'What does `INSERT ... ON CONFLICT (id) DO NOTHING` do when the id exists?',
        correct: 'Skips that row without an error',
        wrong: [
          'Replaces the existing row',
          'Raises a unique violation',
          'Inserts a second row with the same id',
        ],
        explanation: 'The conflicting row is left alone and no error is raised.',
        difficulty: 'medium',
      },
    ],
  },
  {
    name: 'Event streaming and Kafka',
    keywords: [
      'kafka',
      'event',
      'events',
      'streaming',
      'stream',
      'topic',
      'topics',
      'partition',
      'consumer',
      'producer',
      'messaging',
      'queue',
    ],
    questions: [
      {
        question: 'Within what does Kafka guarantee the order of records?',
        correct: 'A single partition',
        wrong: ['A whole topic', 'A whole cluster', 'A consumer group'],
        explanation: 'Records are ordered by offset within a partition; across partitions there is no order.',
        difficulty: 'easy',
      },
      {
        question: 'How do consumers in one consumer group share a topic?',
        correct: 'Each partition is read by one member of the group at a time',
        wrong: [
          'Every member reads every record',
          'Records are split round-robin per record',
          'Only the oldest member reads',
        ],
        explanation: 'Partitions are assigned to members; every group gets every record once.',
        difficulty: 'easy',
      },
      {
        question: 'Why are records with the same key written to the same partition?',
        correct: 'So that all events of one key stay in order',
        wrong: [
          'To compress them better',
          'To make them expire together',
          'So that every consumer receives them',
        ],
        explanation: 'The partitioner hashes the key; one partition keeps their order.',
        difficulty: 'medium',
      },
      {
        question: 'What does "at least once" delivery imply for a consumer?',
        correct: 'It may see a record again after a crash, so handling must be idempotent',
        wrong: [
          'It never sees a record twice',
          'It may lose records after a crash',
          'It must commit before handling',
        ],
        explanation: 'Offsets are committed after handling; a crash in between redelivers.',
        difficulty: 'medium',
      },
      {
        question: 'What is a dead-letter topic for?',
        correct: 'Keeping records that failed all attempts, so they can be inspected and replayed',
        wrong: [
          'Deleting expired records',
          'Storing consumer offsets',
          'Holding records until a consumer joins',
        ],
        explanation:
          'After the last retry, a record is moved aside instead of blocking its partition or being lost.',
        difficulty: 'medium',
      },
      {
        question: 'What does log compaction keep for each key?',
        correct: 'At least the latest record',
        wrong: ['Only the first record', 'Nothing older than the retention time', 'Every record, compressed'],
        explanation: 'Compaction removes older records of a key; a tombstone eventually removes the key.',
        difficulty: 'hard',
      },
      {
        question: 'Why does the transactional outbox write events into the service database?',
        correct: 'So the state change and the event commit together or not at all',
        wrong: [
          'Because brokers cannot store events',
          'To avoid partitioning',
          'So consumers can query the database',
        ],
        explanation: 'A relay publishes the stored events later; a crash cannot lose one without the other.',
        difficulty: 'hard',
      },
    ],
  },
  {
    name: 'Git',
    keywords: ['git', 'version', 'control', 'branch', 'branches', 'commit', 'merge', 'github'],
    questions: [
      {
        question: 'Which command records staged changes in the repository?',
        correct: 'git commit',
        wrong: ['git add', 'git push', 'git stash'],
        explanation: 'git add stages; git commit records; git push sends commits to a remote.',
        difficulty: 'easy',
      },
      {
        question: 'Which command creates a new branch and switches to it?',
        correct: 'git switch -c name',
        wrong: ['git branch -d name', 'git merge name', 'git log name'],
        explanation: 'switch -c (or checkout -b) creates and switches in one step.',
        difficulty: 'easy',
      },
      {
        question: 'What does `git fetch` do that `git pull` does not?',
        correct: 'Downloads remote commits without changing your branch',
        wrong: ['Deletes remote branches', 'Pushes your commits', 'Rewrites your history'],
        explanation: 'pull is fetch followed by a merge or rebase.',
        difficulty: 'medium',
      },
      {
        question: 'Why should you avoid rebasing commits that others have already pulled?',
        correct: 'Rebasing rewrites them as new commits, so the histories diverge',
        wrong: [
          'Rebasing deletes the working tree',
          'Rebased commits cannot be pushed',
          'It changes the repository URL',
        ],
        explanation: 'Rebased commits get new ids; collaborators then have to reconcile two versions.',
        difficulty: 'hard',
      },
    ],
  },
  {
    name: 'HTTP and APIs',
    keywords: ['http', 'api', 'apis', 'rest', 'web', 'status', 'request', 'requests', 'curl'],
    questions: [
      {
        question: 'Which status code means the request body was invalid?',
        correct: '400 Bad Request',
        wrong: ['200 OK', '404 Not Found', '503 Service Unavailable'],
        explanation: '4xx codes are client errors; 400 says the request itself was wrong.',
        difficulty: 'easy',
      },
      {
        question: 'Which HTTP method is meant to be safe (no side effects)?',
        correct: 'GET',
        wrong: ['POST', 'DELETE', 'PATCH'],
        explanation: 'GET and HEAD only read; they may be repeated freely.',
        difficulty: 'easy',
      },
      {
        question: 'What does 202 Accepted tell the client?',
        correct: 'The request was taken and will be processed later',
        wrong: ['The resource was created', 'The request was rejected', 'The client must retry'],
        explanation: '202 is for work done asynchronously after the response.',
        difficulty: 'medium',
      },
      {
        question: 'What makes a POST endpoint safe to retry?',
        correct: 'An idempotency key the server uses to recognise a repeated request',
        wrong: ['A longer timeout', 'Sending the body twice', 'Using HTTPS'],
        explanation: 'The server stores the key and answers a repeat without doing the work again.',
        difficulty: 'hard',
      },
      {
        question: 'What does a circuit breaker do after several calls to a dependency fail in a row?',
        correct: 'Fails further calls at once for a while, then lets a trial call through',
        wrong: ['Retries every call immediately', 'Restarts the dependency', 'Queues calls until a timeout'],
        explanation: 'Open, then half-open after a cool-down; a successful trial closes it again.',
        difficulty: 'hard',
      },
    ],
  },
  {
    name: 'Data structures',
    keywords: [
      'data',
      'structures',
      'structure',
      'algorithms',
      'algorithm',
      'complexity',
      'hash',
      'tree',
      'array',
      'stack',
      'queue',
    ],
    questions: [
      {
        question: 'Which structure removes items in last-in, first-out order?',
        correct: 'A stack',
        wrong: ['A queue', 'A heap', 'A hash table'],
        explanation: 'A stack pops the most recently pushed item.',
        difficulty: 'easy',
      },
      {
        question: 'What is the average time to look up a key in a hash table?',
        correct: 'O(1)',
        wrong: ['O(n)', 'O(log n)', 'O(n log n)'],
        explanation: 'Hashing finds the bucket directly; collisions make the worst case O(n).',
        difficulty: 'easy',
      },
      {
        question: 'What is the time complexity of binary search on a sorted array?',
        correct: 'O(log n)',
        wrong: ['O(1)', 'O(n)', 'O(n²)'],
        explanation: 'Each step halves the range still to search.',
        difficulty: 'medium',
      },
      {
        question: 'Which traversal of a binary search tree visits the keys in sorted order?',
        correct: 'In-order',
        wrong: ['Pre-order', 'Post-order', 'Level-order'],
        explanation: 'Left subtree, node, right subtree yields ascending keys.',
        difficulty: 'medium',
      },
      {
        question: 'Why does a min-heap give its smallest item in O(1) but remove it in O(log n)?',
        correct: 'The smallest item is at the root; removing it needs the heap order restored down one path',
        wrong: [
          'The heap is fully sorted',
          'Removal rebuilds the whole heap',
          'The smallest item is always a leaf',
        ],
        explanation: 'Sift-down after removal walks one root-to-leaf path, of height log n.',
        difficulty: 'hard',
      },
    ],
  },
];
