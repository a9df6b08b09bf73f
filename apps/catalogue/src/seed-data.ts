/**
 * The questions a new question service database starts with, so `npm start` has topics and
 * difficulties to match on. Loaded only when the questions table is empty.
 */
import type { QuestionInput } from './questions.ts';

export const SEED_QUESTIONS: readonly QuestionInput[] = [
  {
    title: 'Reverse a list in place',
    description: 'Reverse the elements of a Python list without building a new one.',
    topic: 'Python Basics',
    difficulty: 'easy',
  },
  {
    title: 'FizzBuzz',
    description: 'Print the numbers 1 to 100, replacing multiples of 3 and 5 as the rules say.',
    topic: 'Python Loops',
    difficulty: 'easy',
  },
  {
    title: 'Sum of nested loops',
    description: 'Count the pairs (i, j) with i < j whose sum is divisible by k.',
    topic: 'Python Loops',
    difficulty: 'medium',
  },
  {
    title: 'Two sum',
    description: 'Return the indices of the two numbers of an array that add up to a target.',
    topic: 'Arrays',
    difficulty: 'easy',
  },
  {
    title: 'Rotate an array',
    description: 'Rotate an array to the right by k steps using O(1) extra space.',
    topic: 'Arrays',
    difficulty: 'medium',
  },
  {
    title: 'Longest increasing subsequence',
    description: 'Find the length of the longest strictly increasing subsequence of an array.',
    topic: 'Dynamic Programming',
    difficulty: 'hard',
  },
  {
    title: 'Coin change',
    description: 'Find the fewest coins that make up an amount, or -1 when none do.',
    topic: 'Dynamic Programming',
    difficulty: 'medium',
  },
];
