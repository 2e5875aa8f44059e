// A small built-in multiple-choice set in MMLU's format, for offline runs: 40 general-knowledge
// questions written for this package (MIT, like the package), eight each on computer science,
// mathematics, science, geography/history and miscellany, answers spread over A-D. It detects
// a quantization that breaks a model's knowledge; it is far too small to rank models (use
// --mmlu cais/mmlu, the real test set, for that).

import type { MultipleChoiceQuestion } from "./multiple-choice.js";

type Row = [subject: string, question: string, a: string, b: string, c: string, d: string, answer: "A" | "B" | "C" | "D"];

const ROWS: Row[] = [
  ["computer_science", "Which Python keyword is used to define a function?", "func", "def", "function", "lambda", "B"],
  ["computer_science", "What does len([1, 2, 3]) return in Python?", "3", "2", "6", "[1, 2, 3]", "A"],
  ["computer_science", "Which module in the Python standard library provides regular expressions?", "regex", "string", "re", "pattern", "C"],
  ["computer_science", "What is the result of 7 // 2 in Python 3?", "3.5", "4", "1", "3", "D"],
  ["computer_science", "Which of these Python types is immutable?", "tuple", "list", "dict", "set", "A"],
  ["computer_science", "Which exception does Python raise when a dictionary key is missing?", "IndexError", "KeyError", "ValueError", "NameError", "B"],
  ["computer_science", "Which data structure returns elements in last-in, first-out order?", "queue", "heap", "stack", "hash table", "C"],
  ["computer_science", "How many bits are in a byte?", "4", "16", "32", "8", "D"],
  ["mathematics", "What is 12 multiplied by 12?", "144", "124", "132", "154", "A"],
  ["mathematics", "What is the derivative of x^2 with respect to x?", "x", "2x", "x^2", "2", "B"],
  ["mathematics", "Which of the following numbers is prime?", "21", "27", "29", "33", "C"],
  ["mathematics", "What is the square root of 81?", "7", "8", "10", "9", "D"],
  ["mathematics", "A right triangle has one angle of 45 degrees. What is its third angle?", "45 degrees", "30 degrees", "60 degrees", "90 degrees", "A"],
  ["mathematics", "What is 15% of 200?", "15", "30", "20", "45", "B"],
  ["mathematics", "What is the sum of the interior angles of a quadrilateral?", "180 degrees", "270 degrees", "360 degrees", "540 degrees", "C"],
  ["mathematics", "What is 2 to the power of 10?", "100", "512", "2048", "1024", "D"],
  ["science", "What is the chemical symbol for gold?", "Au", "Ag", "Gd", "Go", "A"],
  ["science", "Which planet is closest to the Sun?", "Venus", "Mercury", "Earth", "Mars", "B"],
  ["science", "Which gas do plants absorb from the air for photosynthesis?", "oxygen", "nitrogen", "carbon dioxide", "hydrogen", "C"],
  ["science", "At sea level, at what temperature in degrees Celsius does water freeze?", "-10", "32", "100", "0", "D"],
  ["science", "Which part of a cell holds most of its genetic material?", "the nucleus", "the ribosome", "the cell membrane", "the cytoplasm", "A"],
  ["science", "What is the SI unit of force?", "joule", "newton", "watt", "pascal", "B"],
  ["science", "Which particle carries a negative electric charge?", "proton", "neutron", "electron", "photon", "C"],
  ["science", "Which gas makes up most of Earth's atmosphere?", "oxygen", "argon", "carbon dioxide", "nitrogen", "D"],
  ["geography", "What is the capital of France?", "Paris", "Berlin", "Madrid", "Rome", "A"],
  ["geography", "Which is the largest ocean on Earth?", "Atlantic", "Pacific", "Indian", "Arctic", "B"],
  ["geography", "On which continent is Egypt?", "Asia", "Europe", "Africa", "South America", "C"],
  ["geography", "What is the capital of Japan?", "Kyoto", "Osaka", "Seoul", "Tokyo", "D"],
  ["history", "In which year did the Second World War end?", "1945", "1918", "1939", "1950", "A"],
  ["history", "Who wrote the play Romeo and Juliet?", "Charles Dickens", "William Shakespeare", "Jane Austen", "Mark Twain", "B"],
  ["geography", "Which river flows through London?", "Seine", "Danube", "Thames", "Rhine", "C"],
  ["history", "Which civilization built the pyramids of Giza?", "the Romans", "the Greeks", "the Aztecs", "the ancient Egyptians", "D"],
  ["miscellaneous", "How many days are in a leap year?", "366", "365", "364", "367", "A"],
  ["miscellaneous", "Which language is mainly spoken in Brazil?", "Spanish", "Portuguese", "French", "English", "B"],
  ["miscellaneous", "How many continents are there by the most common count?", "five", "six", "seven", "eight", "C"],
  ["miscellaneous", "What is the largest mammal?", "the African elephant", "the giraffe", "the hippopotamus", "the blue whale", "D"],
  ["miscellaneous", "Which instrument has 88 keys in its standard form?", "the piano", "the guitar", "the violin", "the flute", "A"],
  ["miscellaneous", "How many minutes are in one hour?", "100", "60", "30", "24", "B"],
  ["miscellaneous", "What color do you get by mixing blue and yellow paint?", "purple", "orange", "green", "red", "C"],
  ["miscellaneous", "How many sides does a hexagon have?", "five", "eight", "seven", "six", "D"],
];

export const BUILTIN_MMLU: readonly MultipleChoiceQuestion[] = ROWS.map(([subject, question, a, b, c, d, answer]) => ({
  subject,
  question,
  choices: [a, b, c, d],
  answer: "ABCD".indexOf(answer),
}));
